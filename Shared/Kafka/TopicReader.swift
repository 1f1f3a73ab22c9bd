import Foundation
import Logging

/// Reads a topic up to the end it had when reading began, as one consumer group: the audit, the dead-letter
/// commands, the experiments and a service rebuilding its database from the log all read this way.
public struct TopicReader: Sendable {
    public let configuration: KafkaConfiguration

    public init(configuration: KafkaConfiguration) {
        self.configuration = configuration
    }

    /// Every message from the group's committed offsets (or the beginning) up to the current end. The group's
    /// offsets move past what was read, so the next read by the same group starts after it.
    public func readToEnd(_ topic: String, group: String, timeout: Duration = .seconds(60)) async throws -> [ConsumedMessage] {
        var messages: [ConsumedMessage] = []
        try await forEachBatchToEnd(topic, group: group, timeout: timeout) { messages += $0 }
        return messages
    }

    /// Hands each batch up to the current end to `body`, and commits the group's offsets past a batch only once
    /// `body` returned: what `body` throws on is read again by the group's next run.
    public func forEachBatchToEnd(
        _ topic: String, group: String, timeout: Duration = .seconds(60), _ body: ([ConsumedMessage]) async throws -> Void
    ) async throws {
        let offsets = try await KafkaAdmin(configuration: configuration).offsets(of: [topic], group: group)
        var remaining = Dictionary(uniqueKeysWithValues: offsets.compactMap { partition -> (TopicPartition, Int64)? in
            let start = max(partition.committed ?? partition.low, partition.low)
            return start < partition.high ? (partition.partition, partition.high) : nil
        })
        guard !remaining.isEmpty else { return }
        // Joining and leaving a group of its own is routine here, not news.
        var logger = Logger(label: "emporium.topic-reader")
        logger.logLevel = .warning
        let consumer = try KafkaConsumer(configuration: configuration, group: group, topics: [topic], logger: logger)
        // Closing the consumer ends the stream below, so a partition that never delivers cannot hold this forever.
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            await consumer.close()
        }
        defer { watchdog.cancel() }
        do {
            for try await batch in consumer.batches {
                var wanted: [ConsumedMessage] = []
                for message in batch.messages where remaining[message.topicPartition].map({ message.offset < $0 }) ?? false {
                    wanted.append(message)
                    if message.offset + 1 >= remaining[message.topicPartition]! { remaining[message.topicPartition] = nil }
                }
                try await body(wanted)
                try await consumer.commit(batch)
                if remaining.isEmpty { break }
            }
        } catch KafkaError.consumerClosed where !remaining.isEmpty {
            // The watchdog closed it mid-commit: reported as the timeout below.
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
        guard remaining.isEmpty else {
            throw KafkaError.readTimedOut(topic: topic, timeout: timeout, partitionsShort: remaining.count)
        }
    }
}
