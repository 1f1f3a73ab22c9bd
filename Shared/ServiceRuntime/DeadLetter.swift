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
    }

    /// What a dead letter keeps of the original's headers: a header name can be as long as the message, and the
    /// outbox stores names with a 2-byte length, so one absurd header must not make the letter unwritable (and
    /// the partition stuck behind it). Headers past these limits are dropped and counted in the reason.
    public enum Limits {
        public static let headers = 64
        public static let nameBytes = 1024
        public static let reasonCharacters = 1000
    }

    /// The dead letter of `original`: its key, value and headers (less any `dlq-*` header it carried, which only a
    /// dead-lettering consumer may write) followed by this consumer's `dlq-*` headers.
    public static func message(for original: ConsumedMessage, reason: String, group: String) -> OutgoingMessage {
        var kept: [KafkaHeader] = []
        var dropped = 0
        for header in original.headers where !header.name.hasPrefix(prefix) {
            if kept.count < Limits.headers && header.name.utf8.count <= Limits.nameBytes {
                kept.append(header)
            } else {
                dropped += 1
            }
        }
        var reason = reason
        if dropped > 0 {
            reason += " (\(dropped) of its headers not kept: more than \(Limits.headers), or a name over \(Limits.nameBytes) bytes)"
        }
        return OutgoingMessage(
            topic: original.topic + suffix, key: original.key.map(Array.init), value: Array(original.value),
            headers: kept + [
                KafkaHeader(Header.reason, capped(reason)),
                KafkaHeader(Header.group, group),
                KafkaHeader(Header.sourceTopic, original.topic),
                KafkaHeader(Header.sourcePartition, String(original.partition)),
                KafkaHeader(Header.sourceOffset, String(original.offset)),
                KafkaHeader(Header.failedAt, Timestamp.now()),
            ])
    }

    /// The original message of a dead letter, as it was before it failed: for replay. It goes back only to the
    /// topic whose dead-letter topic holds it (`X.dlq` to `X`), and only if the `dlq-*` headers the consumer added
    /// (the last ones: a letter's original headers carry none) say so; nil for anything else on a dead-letter topic.
    public static func original(of deadLetter: ConsumedMessage) -> OutgoingMessage? {
        guard deadLetter.topic.hasSuffix(suffix) else { return nil }
        let source = String(deadLetter.topic.dropLast(suffix.count))
        let headers = deadLetter.headers
        guard let named = headers.last(where: { $0.name == Header.sourceTopic }),
              String(decoding: named.value, as: UTF8.self) == source else { return nil }
        return OutgoingMessage(
            topic: source, key: deadLetter.key.map(Array.init), value: Array(deadLetter.value),
            headers: headers.filter { !$0.name.hasPrefix(prefix) })
    }

    /// A header the dead-lettering consumer added to `letter`: the last of that name.
    public static func added(_ name: String, to letter: ConsumedMessage) -> String? {
        letter.headers.last { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
    }

    /// `text` cut to `Limits.reasonCharacters`, saying so: reasons quote what they found, which can be huge.
    public static func capped(_ text: String) -> String {
        guard text.count > Limits.reasonCharacters else { return text }
        return text.prefix(Limits.reasonCharacters) + "… (\(text.count - Limits.reasonCharacters) more characters)"
    }

    private static let prefix = "dlq-"
    private static let suffix = ".dlq"
}
