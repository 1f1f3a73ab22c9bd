import AsyncHTTPClient
import DomainEvents
import Foundation
import Kafka
import Logging
import ServiceRuntime

/// A broker lost under load: its partitions get new leaders, clients follow them, and nothing is lost.
struct BrokerFailover: Experiment {
    let name = "broker-failover"
    let claim = "a broker taken down under load: its partitions' leaders move, producers and consumers follow after a short stall, and nothing is lost"

    func run(_ lab: Lab) async throws -> Verdict {
        lab.step("starting the cluster (3 brokers) and the four services")
        try await lab.shop.start()
        let shop = lab.shop
        let topics = Topic.allCases.map(\.name)
        let admin = try KafkaAdmin(configuration: try lab.kafka())
        lab.step("an observer group reads the shop's topics as messages land; placing orders at 40/s for 25 s")
        let observer = try ArrivalObserver(configuration: try lab.kafka(), topics: topics)
        async let load = shop.generate(orders: 1_000, seed: lab.seed, rate: 40)
        try await Task.sleep(for: .seconds(6))
        let before = try await admin.leaders(of: topics)
        let led = before.filter { $0.value == 1 }.keys.sorted()
        lab.step("taking broker 1 down; it leads \(led.count) of the shop's \(before.count) partitions")
        let control = try String(contentsOfFile: lab.shop.varDirectory.appendingPathComponent("kafka/control").path, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let downAt = ContinuousClock.now
        try await post(control + "/brokers/1/down", lab)
        lab.step("electing new leaders for them on brokers 2 and 3, as a controller would")
        for (index, partition) in led.enumerated() {
            try await post(control + "/topics/\(partition.topic)/partitions/\(partition.partition)/leader/\(2 + index % 2)", lab)
        }
        try await Task.sleep(for: .seconds(10))
        lab.step("bringing broker 1 back (it stays a follower)")
        try await post(control + "/brokers/1/up", lab)
        let summary = try await load
        try await shop.waitUntilAtRest()
        let arrivals = await observer.stop()
        let after = try await admin.leaders(of: topics)
        let audit = try await shop.audit()
        // Per partition of broker 1, the longest wait between two messages reaching the observer, around the
        // fault and in the seconds before it: the difference is the stall the fault caused.
        let firstArrival = arrivals.values.flatMap { $0 }.min() ?? downAt
        let normal = led.map { longestGap(arrivals[$0] ?? [], from: firstArrival, to: downAt) }.sorted()
        let stalled = led.map { longestGap(arrivals[$0] ?? [], from: downAt, to: .now) }.sorted()
        lab.evidence(["BROKER", "LEADS BEFORE", "LEADS DURING AND AFTER"], (1...3).map { broker in
            [String(broker), String(before.values.filter { $0 == broker }.count), String(after.values.filter { $0 == broker }.count)]
        })
        func spread(_ gaps: [Duration]) -> String {
            gaps.isEmpty ? "-" : String(format: "%.1f s, %.1f s", gaps[gaps.count / 2].seconds, gaps.last!.seconds)
        }
        lab.evidence(["", ""], [
            ["longest wait between messages on broker 1's partitions before the fault (median, slowest)", spread(normal)],
            ["the same once it went down: the stall (median, slowest)", spread(stalled)],
            ["slowest order, placed → ended", String(format: "%.1f s", (summary.latencyMilliseconds["max"] ?? 0) / 1000)],
            ["orders placed / pending / failed requests", "\(summary.placed) / \(summary.pending) / \(summary.httpErrors)"],
            ["audit", audit.clean ? "clean" : "violations"],
        ])
        let moved = led.allSatisfy { after[$0] != 1 }
        return .check(moved && !led.isEmpty && summary.pending == 0 && summary.httpErrors == 0 && audit.clean,
                      shown: String(format: "%d leaders moved off broker 1; messages on them stalled for %.1f s at most (%.1f s before the fault), and all %d orders ended, audit clean",
                                    led.count, stalled.last?.seconds ?? 0, normal.last?.seconds ?? 0, summary.placed),
                      otherwise: "leaders moved \(moved), \(summary.pending) orders pending, \(summary.httpErrors) failed requests, audit \(audit.clean ? "clean" : "not clean")")
    }

    private func post(_ url: String, _ lab: Lab) async throws {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        let response = try await lab.shop.http.execute(request, timeout: .seconds(10))
        guard response.status == .ok else { throw CommandFailure("POST \(url) answered \(response.status.code)") }
    }

    /// The longest time between `start` and `end` with no arrival, counting from `start` to the first.
    private func longestGap(_ times: [ContinuousClock.Instant], from start: ContinuousClock.Instant, to end: ContinuousClock.Instant) -> Duration {
        let inside = [start] + times.filter { $0 > start && $0 < end }
        return zip(inside, inside.dropFirst()).map { $1 - $0 }.max() ?? .zero
    }
}

/// A consumer group of its own that notes when each message reaches it, per partition: what a downstream
/// consumer sees of a stall anywhere between a producer and the log.
final class ArrivalObserver: Sendable {
    private let consumer: KafkaConsumer
    private let reading: Task<[TopicPartition: [ContinuousClock.Instant]], Never>

    init(configuration: KafkaConfiguration, topics: [String]) throws {
        var logger = Logger(label: "emporium.experiment.observer")
        logger.logLevel = .warning
        consumer = try KafkaConsumer(configuration: configuration, group: "emporium-experiment-observer-\(UUID().uuidString.prefix(8))",
                                     topics: topics, logger: logger)
        let consumer = self.consumer
        reading = Task {
            var arrivals: [TopicPartition: [ContinuousClock.Instant]] = [:]
            do {
                for try await batch in consumer.batches {
                    let now = ContinuousClock.now
                    for message in batch.messages { arrivals[message.topicPartition, default: []].append(now) }
                    // Its commits fail while the group's coordinator is the broker that is down; it reads on regardless.
                    try? await consumer.commit(batch)
                }
            } catch {}
            return arrivals
        }
    }

    func stop() async -> [TopicPartition: [ContinuousClock.Instant]] {
        await consumer.close()
        return await reading.value
    }
}

/// What `acks`, compression and `linger.ms` cost and buy, measured with one producer per setting.
struct ProducerSettings: Experiment {
    let name = "producer-settings"
    let claim = "acks, compression.type and linger.ms trade throughput, bytes on the wire and latency against each other"

    private struct Setting {
        let label: String
        let properties: [String: String]
    }

    private let settings: [Setting] = [
        Setting(label: "the shop's: acks=all lz4 linger.ms=5", properties: [:]),
        Setting(label: "acks=1", properties: ["acks": "1", "enable.idempotence": "false"]),
        Setting(label: "acks=0", properties: ["acks": "0", "enable.idempotence": "false"]),
        Setting(label: "compression.type=none", properties: ["compression.type": "none"]),
        Setting(label: "compression.type=gzip", properties: ["compression.type": "gzip"]),
        Setting(label: "compression.type=snappy", properties: ["compression.type": "snappy"]),
        Setting(label: "compression.type=zstd", properties: ["compression.type": "zstd"]),
        Setting(label: "linger.ms=0", properties: ["linger.ms": "0"]),
        Setting(label: "linger.ms=50", properties: ["linger.ms": "50"]),
    ]

    private struct Figures {
        let perSecond: Double
        let wireBytesPerMessage: Double
        let p50: Double
        let p99: Double
    }

    func run(_ lab: Lab) async throws -> Verdict {
        lab.step("starting the embedded cluster (no services needed)")
        try await lab.shop.startCluster()
        var plan = OrderPlan(customers: 100, products: 200, skew: 1, seed: lab.seed)
        let messages = (0..<20_000).map { index in
            OutgoingMessage(topic: "experiment.producer", key: "customer-\(index % 100)", value: Array(plan.next()))
        }
        let payloadBytes = Double(messages.reduce(0) { $0 + $1.value.count }) / Double(messages.count)
        lab.step(String(format: "per setting: 20,000 order payloads (%.0f bytes each on average) at once, then 200 one by one", payloadBytes))
        var figures: [String: Figures] = [:]
        for setting in settings {
            figures[setting.label] = try await measure(setting, messages: messages, lab: lab)
            lab.step("measured \(setting.label)")
        }
        lab.evidence(["SETTING", "MESSAGES/S", "BYTES ON THE WIRE PER MESSAGE", "ONE-BY-ONE LATENCY P50", "P99"], settings.map { setting in
            let f = figures[setting.label]!
            return [setting.label, String(format: "%.0f", f.perSecond), String(format: "%.0f", f.wireBytesPerMessage),
                    String(format: "%.2f ms", f.p50), String(format: "%.2f ms", f.p99)]
        })
        let none = figures["compression.type=none"]!, shop = figures[settings[0].label]!
        let lingerShort = figures["linger.ms=0"]!, lingerLong = figures["linger.ms=50"]!
        let compressionSaves = ["gzip", "snappy", "zstd"].allSatisfy { figures["compression.type=\($0)"]!.wireBytesPerMessage < none.wireBytesPerMessage }
            && shop.wireBytesPerMessage < none.wireBytesPerMessage
        let lingerCosts = lingerLong.p50 > lingerShort.p50 + 20
        return .check(compressionSaves && lingerCosts,
                      shown: String(format: "lz4 sends %.0f%% of uncompressed bytes; linger.ms=50 adds %.0f ms to a lone message; acks=0 %.0f msgs/s vs acks=all %.0f",
                                    100 * shop.wireBytesPerMessage / none.wireBytesPerMessage, lingerLong.p50 - lingerShort.p50,
                                    figures["acks=0"]!.perSecond, shop.perSecond),
                      otherwise: "compression \(compressionSaves ? "saved" : "did not save") bytes; linger.ms=50 \(lingerCosts ? "added" : "did not add") latency")
    }

    private func measure(_ setting: Setting, messages: [OutgoingMessage], lab: Lab) async throws -> Figures {
        var configuration = try lab.kafka()
        for (key, value) in setting.properties { configuration.properties["producer." + key] = value }
        configuration.properties["producer.statistics.interval.ms"] = "100"
        let producer = try KafkaProducer(configuration: configuration)
        _ = try await producer.send(messages[0])
        let started = ContinuousClock.now
        for result in await producer.send(messages) { _ = try result.get() }
        let perSecond = Double(messages.count) / (ContinuousClock.now - started).seconds
        var latencies: [Double] = []
        for message in messages.prefix(200) {
            let sent = ContinuousClock.now
            _ = try await producer.send(message)
            latencies.append((ContinuousClock.now - sent).seconds * 1000)
        }
        latencies.sort()
        // The statistics come every 100 ms: wait for one emitted after the last delivery.
        let delivered = Double(messages.count + 201)
        var wireBytes = 0.0
        try await lab.shop.waitFor("the producer's statistics", seconds: 10) {
            guard let json = producer.latestStatistics, let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
                  let sent = (object["txmsgs"] as? NSNumber)?.doubleValue, let bytes = (object["tx_bytes"] as? NSNumber)?.doubleValue else { return false }
            wireBytes = bytes
            return sent >= delivered
        }
        await producer.close()
        return Figures(perSecond: perSecond, wireBytesPerMessage: wireBytes / delivered, p50: latencies.percentile(0.5), p99: latencies.percentile(0.99))
    }
}
