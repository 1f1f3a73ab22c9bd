import Foundation
import Kafka

/// Reads a topic up to the end it had when reading began, as one consumer group.
struct TopicReader {
    let configuration: KafkaConfiguration

    /// Every message from the group's committed offsets (or the beginning) up to the current end. The group's
    /// offsets move past what was read, so the next read by the same group starts after it.
    func readToEnd(_ topic: String, group: String, timeout: Duration = .seconds(60)) async throws -> [ConsumedMessage] {
        let offsets = try await KafkaAdmin(configuration: configuration).offsets(of: [topic], group: group)
        var remaining = Dictionary(uniqueKeysWithValues: offsets.compactMap { partition -> (TopicPartition, Int64)? in
            let start = max(partition.committed ?? partition.low, partition.low)
            return start < partition.high ? (partition.partition, partition.high) : nil
        })
        guard !remaining.isEmpty else { return [] }
        let consumer = try KafkaConsumer(configuration: configuration, group: group, topics: [topic])
        var messages: [ConsumedMessage] = []
        let deadline = ContinuousClock.now + timeout
        for try await batch in consumer.batches {
            for message in batch.messages where remaining[message.topicPartition].map({ message.offset < $0 }) ?? false {
                messages.append(message)
                if message.offset + 1 >= remaining[message.topicPartition]! { remaining[message.topicPartition] = nil }
            }
            try await consumer.commit(batch)
            if remaining.isEmpty || ContinuousClock.now > deadline { break }
        }
        await consumer.close()
        return messages
    }
}
