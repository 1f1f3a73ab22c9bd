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

        let real = try KafkaConfiguration.resolve(
            overrides: ["security.protocol=SSL"], environment: ["KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092"], varDirectory: directory.path)
        #expect(real.bootstrapServers == "kafka-1:9092")
        #expect(real.properties["security.protocol"] == "SSL")
        #expect(real.consumerProperties(group: "g")["fetch.wait.max.ms"] == nil)
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
}
