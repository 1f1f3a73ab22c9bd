import Foundation

/// librdkafka properties, by librdkafka's own names, layered over Emporium's defaults.
///
/// Keys that start with `producer.` or `consumer.` apply to that kind of client only, with the prefix removed,
/// so one file can tune both (`consumer.fetch.wait.max.ms=5`).
public struct KafkaConfiguration: Sendable, Equatable {
    /// What the user set: bootstrap servers, security, any override.
    public var properties: [String: String]
    /// Whether the bootstrap servers came from the embedded cluster's file: that cluster has no CreateTopics.
    public var isEmbeddedCluster = false

    public init(_ properties: [String: String] = [:]) {
        self.properties = properties
    }

    public init(bootstrapServers: String, _ properties: [String: String] = [:]) {
        self.properties = properties.merging(["bootstrap.servers": bootstrapServers]) { _, new in new }
    }

    public var bootstrapServers: String? { properties["bootstrap.servers"] }

    /// Durable, ordered, compressed: the producer docs/contract.md asks for.
    public static let producerDefaults: [String: String] = [
        "enable.idempotence": "true",
        "acks": "all",
        "compression.type": "lz4",
        "partitioner": "murmur2_random",
        "linger.ms": "5",
    ]

    /// Offsets move only when Emporium commits them, after processing. The eager `range,roundrobin` assignors,
    /// because librdkafka 2.0.2's cooperative-sticky can crash a consumer that closes before its first rebalance.
    /// A 6 s session keeps a killed consumer from holding its partitions for long.
    public static let consumerDefaults: [String: String] = [
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range,roundrobin",
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1500",
    ]

    /// The embedded (mock) cluster holds an empty fetch for the whole `fetch.wait.max.ms` even when data arrives,
    /// so its consumers ask often. It notices a dead member only after `session.timeout.ms` (plus up to a second)
    /// and holds every rebalance after a group's first for `session.timeout.ms` − 1 s, so a killed member costs
    /// about twice the session timeout; it enforces no minimum. It holds a group's first join for 3 s, though,
    /// and expires a member that waits out its whole session there: 3.5 s is the shortest safe session (2 s
    /// failed every first join). Measured with a service killed every 2 s under load: the slowest order took
    /// 24.8 s with Kafka's 6 s (one run) and 14 to 23 s with 3.5 s (five runs). Brokers that come back are
    /// reconnected to within a second. The consumers' `cgrp` debug lines carry the one thing librdkafka tells
    /// nowhere else, the member the group elected leader (`JoinGroupAnswer`), which a restarted instance needs to
    /// take a dead leader out of its group; they are logged only at the debug level.
    /// A real cluster keeps Kafka's defaults.
    public static let embeddedClusterTuning: [String: String] = [
        "consumer.fetch.wait.max.ms": "5",
        "consumer.session.timeout.ms": "3500",
        "consumer.heartbeat.interval.ms": "500",
        "consumer.debug": "cgrp",
        "reconnect.backoff.max.ms": "1000",
    ]

    /// Properties for a producer: defaults, then everything not reserved for consumers.
    public func producerProperties() -> [String: String] {
        Self.producerDefaults.merging(scoped(to: "producer.", excluding: "consumer.")) { _, user in user }
    }

    /// Properties for a consumer in `group`: defaults, then everything not reserved for producers.
    public func consumerProperties(group: String) -> [String: String] {
        Self.consumerDefaults
            .merging(["group.id": group]) { _, new in new }
            .merging(scoped(to: "consumer.", excluding: "producer.")) { _, user in user }
    }

    /// Properties for a client that neither produces nor consumes (admin, metadata).
    public func plainProperties() -> [String: String] {
        properties.filter { !$0.key.hasPrefix("producer.") && !$0.key.hasPrefix("consumer.") }
    }

    private func scoped(to prefix: String, excluding other: String) -> [String: String] {
        var result: [String: String] = [:]
        for (key, value) in properties where !key.hasPrefix(other) && !key.hasPrefix(prefix) {
            result[key] = value
        }
        for (key, value) in properties where key.hasPrefix(prefix) {
            result[String(key.dropFirst(prefix.count))] = value
        }
        return result
    }

    /// Adds `key=value` overrides, later ones winning.
    public mutating func apply(overrides: [String]) throws {
        for text in overrides {
            let (key, value) = try Self.parse(text)
            properties[key] = value
        }
    }

    /// Reads a Java-style properties file: `key=value` lines, `#` or `!` comments, blank lines ignored.
    public static func readPropertiesFile(at path: String) throws -> [String: String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KafkaError.missingSetting(name: "KAFKA_PROPERTIES_FILE", hint: "cannot read \(path)")
        }
        var properties: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.hasPrefix("!") { continue }
            let (key, value) = try parse(trimmed)
            properties[key] = value
        }
        return properties
    }

    static func parse(_ text: String) throws -> (String, String) {
        guard let equals = text.firstIndex(of: "=") else { throw KafkaError.malformedProperty(text) }
        let key = text[..<equals].trimmingCharacters(in: .whitespaces)
        let value = text[text.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        guard !key.isEmpty else { throw KafkaError.malformedProperty(text) }
        return (key, value)
    }
}

extension KafkaConfiguration {
    /// Where the embedded cluster publishes its bootstrap servers, under Emporium's runtime directory.
    public static func embeddedBootstrapFile(varDirectory: String) -> String {
        varDirectory + "/kafka/bootstrap"
    }

    /// Resolves the configuration every Emporium process uses, later sources winning:
    /// `KAFKA_PROPERTIES_FILE`; the bootstrap servers from `--bootstrap-servers` or `KAFKA_BOOTSTRAP_SERVERS`;
    /// failing both, the embedded cluster's bootstrap file (with the embedded tuning);
    /// then each `--kafka-property key=value`. Emporium's producer and consumer defaults sit under all of them.
    public static func resolve(
        bootstrapServers flag: String? = nil,
        overrides: [String] = [],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        varDirectory: String
    ) throws -> KafkaConfiguration {
        var configuration = KafkaConfiguration()
        if let path = environment["KAFKA_PROPERTIES_FILE"], !path.isEmpty {
            configuration.properties = try readPropertiesFile(at: path)
        }
        if let servers = flag ?? environment["KAFKA_BOOTSTRAP_SERVERS"], !servers.isEmpty {
            configuration.properties["bootstrap.servers"] = servers
        } else if configuration.bootstrapServers == nil {
            let file = embeddedBootstrapFile(varDirectory: varDirectory)
            guard let servers = try? String(contentsOfFile: file, encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines), !servers.isEmpty
            else {
                throw KafkaError.missingSetting(
                    name: "KAFKA_BOOTSTRAP_SERVERS",
                    hint: "set it (or pass --bootstrap-servers), or start the embedded cluster with `emporium cluster` so that \(file) exists"
                )
            }
            configuration.properties.merge(embeddedClusterTuning) { user, _ in user }
            configuration.properties["bootstrap.servers"] = servers
            configuration.isEmbeddedCluster = true
        }
        try configuration.apply(overrides: overrides)
        return configuration
    }
}
