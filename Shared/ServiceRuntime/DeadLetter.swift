import DomainEvents
import Kafka

/// A message a consumer could not process, bound for `<topic>.dlq` with the original key, value and headers
/// and the `dlq-*` headers of docs/contract.md.
public enum DeadLetter {
    public enum Header {
        public static let reason = "dlq-reason"
        public static let group = "dlq-group"
        public static let sourceTopic = "dlq-source-topic"
        public static let sourcePartition = "dlq-source-partition"
        public static let sourceOffset = "dlq-source-offset"
        public static let failedAt = "dlq-failed-at"
        static let all: Set<String> = [reason, group, sourceTopic, sourcePartition, sourceOffset, failedAt]
    }

    public static func message(for original: ConsumedMessage, reason: String, group: String) -> OutgoingMessage {
        OutgoingMessage(
            topic: original.topic + ".dlq", key: original.key.map(Array.init), value: Array(original.value),
            headers: original.headers + [
                KafkaHeader(Header.reason, reason),
                KafkaHeader(Header.group, group),
                KafkaHeader(Header.sourceTopic, original.topic),
                KafkaHeader(Header.sourcePartition, String(original.partition)),
                KafkaHeader(Header.sourceOffset, String(original.offset)),
                KafkaHeader(Header.failedAt, Timestamp.now()),
            ])
    }

    /// The original message of a dead letter, as it was before it failed: for replay to its source topic.
    public static func original(of deadLetter: ConsumedMessage) -> OutgoingMessage? {
        guard let source = deadLetter.header(Header.sourceTopic) else { return nil }
        return OutgoingMessage(
            topic: source, key: deadLetter.key.map(Array.init), value: Array(deadLetter.value),
            headers: deadLetter.headers.filter { !Header.all.contains($0.name) })
    }
}
