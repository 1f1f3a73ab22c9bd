import Foundation
import Kafka
import Testing

@Suite struct ConfigurationTests {
    @Test func anUnknownPropertyFailsNamingIt() {
        let configuration = KafkaConfiguration(bootstrapServers: "127.0.0.1:1", ["linger.millis": "5"])
        #expect {
            _ = try KafkaProducer(configuration: configuration)
        } throws: { error in
            guard case KafkaError.invalidProperty(let name, let message) = error else { return false }
            return name == "linger.millis" && message.contains("linger.millis") && "\(error)".contains("linger.millis")
        }
    }

    @Test func aBadValueFailsNamingTheProperty() {
        let configuration = KafkaConfiguration(bootstrapServers: "127.0.0.1:1", ["consumer.session.timeout.ms": "soon"])
        #expect {
            _ = try KafkaConsumer(configuration: configuration, group: "g", topics: ["t"])
        } throws: { error in
            guard case KafkaError.invalidProperty(let name, _) = error else { return false }
            return name == "session.timeout.ms"
        }
    }

    @Test func producerAndConsumerGetEmporiumsSafeDefaults() {
        let configuration = KafkaConfiguration(bootstrapServers: "broker:9092")
        let producer = configuration.producerProperties()
        #expect(producer["enable.idempotence"] == "true")
        #expect(producer["acks"] == "all")
        #expect(producer["compression.type"] == "lz4")
        #expect(producer["partitioner"] == "murmur2_random")
        let consumer = configuration.consumerProperties(group: "payments")
        #expect(consumer["enable.auto.commit"] == "false")
        #expect(consumer["enable.auto.offset.store"] == "false")
        #expect(consumer["auto.offset.reset"] == "earliest")
        #expect(consumer["group.id"] == "payments")
        // What the README promises: the eager assignors and a 6 s session timeout.
        #expect(consumer["partition.assignment.strategy"] == "range,roundrobin")
        #expect(consumer["session.timeout.ms"] == "6000")
    }

    @Test func scopedPropertiesReachOnlyTheirKindOfClient() {
        let configuration = KafkaConfiguration(bootstrapServers: "b:1", ["consumer.fetch.wait.max.ms": "5", "producer.linger.ms": "1", "acks": "1"])
        #expect(configuration.consumerProperties(group: "g")["fetch.wait.max.ms"] == "5")
        #expect(configuration.producerProperties()["fetch.wait.max.ms"] == nil)
        #expect(configuration.producerProperties()["linger.ms"] == "1")
        #expect(configuration.producerProperties()["acks"] == "1")
        #expect(configuration.consumerProperties(group: "g")["linger.ms"] == nil)
    }

    @Test func resolutionPrefersTheEnvironmentOverTheEmbeddedClustersFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("kafka"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "127.0.0.1:9\n".write(to: directory.appendingPathComponent("kafka/bootstrap"), atomically: true, encoding: .utf8)

        let embedded = try KafkaConfiguration.resolve(environment: [:], varDirectory: directory.path)
        #expect(embedded.bootstrapServers == "127.0.0.1:9")
        #expect(embedded.consumerProperties(group: "g")["fetch.wait.max.ms"] == "5")
        #expect(embedded.consumerProperties(group: "g")["session.timeout.ms"] == "3500", "the mock's quick failover")
        #expect(embedded.consumerProperties(group: "g")["debug"] == "cgrp", "the joins' answers name the group's leader")
        #expect(embedded.producerProperties()["debug"] == nil)

        let real = try KafkaConfiguration.resolve(
            overrides: ["security.protocol=SSL"], environment: ["KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092"], varDirectory: directory.path)
        #expect(real.bootstrapServers == "kafka-1:9092")
        #expect(real.properties["security.protocol"] == "SSL")
        #expect(real.consumerProperties(group: "g")["fetch.wait.max.ms"] == nil)
        #expect(real.consumerProperties(group: "g")["session.timeout.ms"] == "6000", "a real cluster keeps Kafka's defaults")
        #expect(real.consumerProperties(group: "g")["debug"] == nil)
    }

    @Test func noBootstrapServersAnywhereSaysWhereToSetThem() {
        #expect {
            _ = try KafkaConfiguration.resolve(environment: [:], varDirectory: "/nonexistent")
        } throws: { error in
            "\(error)".contains("KAFKA_BOOTSTRAP_SERVERS") && "\(error)".contains("emporium cluster")
        }
    }

    @Test func aMalformedOverrideIsRejected() {
        var configuration = KafkaConfiguration()
        #expect(throws: KafkaError.malformedProperty("acks")) { try configuration.apply(overrides: ["acks"]) }
    }

    @Test func aPropertiesFileIsReadLineByLineAndTheEnvironmentAndFlagsWinOverIt() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-\(UUID()).properties")
        defer { try? FileManager.default.removeItem(at: file) }
        try """
            # a comment
            ! another comment

              security.protocol = SASL_SSL
            sasl.jaas.config=org.example.Login required user="a=b";
            bootstrap.servers=from-the-file:9092
            consumer.fetch.wait.max.ms=100
            acks=1
            """.write(to: file, atomically: true, encoding: .utf8)

        let fromFile = try KafkaConfiguration.resolve(
            environment: ["KAFKA_PROPERTIES_FILE": file.path], varDirectory: "/nonexistent")
        #expect(fromFile.properties.count == 5, "comments and blank lines are not properties: \(fromFile.properties)")
        #expect(fromFile.properties["security.protocol"] == "SASL_SSL", "spaces around '=' are trimmed")
        #expect(fromFile.properties["sasl.jaas.config"] == "org.example.Login required user=\"a=b\";", "only the first '=' splits")
        #expect(fromFile.bootstrapServers == "from-the-file:9092")
        #expect(!fromFile.isEmbeddedCluster)
        #expect(fromFile.consumerProperties(group: "g")["fetch.wait.max.ms"] == "100")
        #expect(fromFile.producerProperties()["acks"] == "1", "the file overrides Emporium's defaults")

        let layered = try KafkaConfiguration.resolve(
            overrides: ["acks=all"],
            environment: ["KAFKA_PROPERTIES_FILE": file.path, "KAFKA_BOOTSTRAP_SERVERS": "from-the-environment:9092"],
            varDirectory: "/nonexistent")
        #expect(layered.bootstrapServers == "from-the-environment:9092")
        #expect(layered.producerProperties()["acks"] == "all")
    }

    @Test func theShippedClientPropertiesParse() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../deploy/kafka/client.properties").standardized.path
        let properties = try KafkaConfiguration.readPropertiesFile(at: path)
        #expect(properties["security.protocol"] == "SASL_SSL")
        #expect(properties["consumer.fetch.wait.max.ms"] == "100")
        #expect(properties.keys.allSatisfy { !$0.contains(" ") && !$0.hasPrefix("#") })
    }

    @Test func aBadPropertiesFileNamesTheLineOrThePath() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-\(UUID()).properties")
        defer { try? FileManager.default.removeItem(at: file) }
        try "acks=all\nlinger.ms 5\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(throws: KafkaError.malformedProperty("linger.ms 5")) {
            try KafkaConfiguration.resolve(environment: ["KAFKA_PROPERTIES_FILE": file.path], varDirectory: "/nonexistent")
        }
        #expect {
            try KafkaConfiguration.resolve(environment: ["KAFKA_PROPERTIES_FILE": "/nonexistent/client.properties"], varDirectory: "/nonexistent")
        } throws: { error in
            "\(error)".contains("KAFKA_PROPERTIES_FILE") && "\(error)".contains("/nonexistent/client.properties")
        }
    }
}
