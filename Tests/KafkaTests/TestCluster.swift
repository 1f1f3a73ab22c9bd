import Kafka
import Synchronization
@_exported import TestSupport

/// An in-process embedded cluster with one fresh topic, for tests that need brokers or inject faults.
struct TestCluster {
    let cluster: EmbeddedCluster
    let topic: String
    let partitions: Int32
    let configuration: KafkaConfiguration

    init(partitions: Int32 = 6, brokers: Int32 = 3, extra: [String: String] = [:]) throws {
        cluster = try EmbeddedCluster(brokers: brokers)
        topic = "test-topic"
        self.partitions = partitions
        try cluster.createTopic(TopicSpec(name: topic, partitions: partitions, replicationFactor: min(3, brokers)))
        configuration = KafkaConfiguration(
            bootstrapServers: cluster.bootstrapServers,
            KafkaConfiguration.embeddedClusterTuning.merging(extra) { _, new in new }
        )
    }

    /// Keyed messages `key-<n % keys>` with a sequence number in the value and a header, deterministic.
    func messages(count: Int, keys: Int) -> [OutgoingMessage] {
        (0..<count).map { index in
            OutgoingMessage(
                topic: topic, key: "key-\(index % keys)", value: Array("\(index)".utf8),
                // Header names both short (Swift keeps those inline) and long (kept in an allocation).
                headers: [KafkaHeader("event-type", "Test"), KafkaHeader("index", "\(index)"),
                          KafkaHeader("a-header-name-of-more-than-sixteen-bytes", "long")]
            )
        }
    }
}

/// What consumers saw, from any task.
final class Ledger: Sendable {
    private let seen = Mutex<[ConsumedMessage]>([])

    func record(_ messages: [ConsumedMessage]) {
        seen.withLock { $0.append(contentsOf: messages) }
    }

    var messages: [ConsumedMessage] { seen.withLock { $0 } }
    var count: Int { seen.withLock { $0.count } }
}

/// Consumes until `done` says so or the consumer is closed, committing every batch; returns how many it saw.
@discardableResult
func consume(
    _ consumer: KafkaConsumer, into ledger: Ledger, until done: @escaping @Sendable () -> Bool
) async throws -> Int {
    var count = 0
    do {
        for try await batch in consumer.batches {
            ledger.record(batch.messages)
            count += batch.messages.count
            try await consumer.commit(batch)
            if done() { break }
        }
    } catch KafkaError.consumerClosed {
        // Closed by the test while this member waited on a commit: what it recorded stands.
    }
    return count
}

