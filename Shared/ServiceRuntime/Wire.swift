import DomainEvents
import Foundation
import Kafka

/// How events become Kafka messages and back (docs/contract.md: envelope, headers, size limit).
public enum Wire {
    /// A whole message (key, value and headers) is at most 256 KiB.
    public static let maximumMessageBytes = 256 * 1024

    public enum Header {
        public static let eventType = "event-type"
        public static let eventVersion = "event-version"
        public static let eventId = "event-id"
        public static let traceparent = "traceparent"
    }

    /// The message for an envelope: its topic, key, JSON value and the routing headers.
    public static func message(for envelope: Envelope, traceparent: String?) throws -> OutgoingMessage {
        var headers = [
            KafkaHeader(Header.eventType, envelope.type.rawValue),
            KafkaHeader(Header.eventVersion, String(envelope.version)),
            KafkaHeader(Header.eventId, envelope.eventId),
        ]
        if let traceparent { headers.append(KafkaHeader(Header.traceparent, traceparent)) }
        return OutgoingMessage(topic: envelope.topic.name, key: envelope.key, value: try encode(envelope), headers: headers)
    }

    public static func encode(_ envelope: Envelope) throws -> [UInt8] {
        EnvelopeJSON.encode(envelope)
    }

    /// The size docs/contract.md limits: key, value and headers.
    public static func size(of message: ConsumedMessage) -> Int {
        (message.key?.count ?? 0) + message.value.count + message.headerByteCount
    }

    /// What the headers alone say about a message: its type and version, or why it cannot be routed. A type on
    /// another topic than its own cannot be routed either: a consumer that skipped it as a type it ignores would
    /// leave it where it does not belong, with no dead letter to show it.
    public static func route(_ message: ConsumedMessage) throws(EventDecodingError) -> (EventType, Int) {
        guard let typeName = message.header(Header.eventType) else { throw .missingHeader(Header.eventType) }
        guard let type = EventType(rawValue: typeName) else { throw .unknownType(typeName) }
        guard type.topic.name == message.topic else {
            throw .contractViolation("\(typeName) belongs on \(type.topic.name), not \(message.topic)")
        }
        guard let versionText = message.header(Header.eventVersion) else { throw .missingHeader(Header.eventVersion) }
        guard let version = Int(versionText), type.supportedVersions.contains(version) else {
            throw .unsupportedVersion(type: typeName, version: versionText)
        }
        return (type, version)
    }

    /// Validates a message in full against the contract and decodes its envelope. `checkingValues: false` skips
    /// the value rules (`DomainEvent.valueViolation`): for the audit, which must see what was written as it is.
    public static func decode(_ message: ConsumedMessage, checkingValues: Bool = true) throws(EventDecodingError) -> Envelope {
        let bytes = size(of: message)
        guard bytes <= maximumMessageBytes else { throw .oversized(bytes: bytes, limit: maximumMessageBytes) }
        let (type, version) = try route(message)
        let envelope = try EnvelopeJSON.decode(message.value)
        try check(envelope, against: message, type: type, version: version)
        if checkingValues, let violation = envelope.event.valueViolation { throw .contractViolation(violation) }
        return envelope
    }

    private static func check(_ envelope: Envelope, against message: ConsumedMessage, type: EventType, version: Int) throws(EventDecodingError) {
        guard envelope.type == type else {
            throw .contractViolation("the type field says \(envelope.type.rawValue) but the event-type header says \(type.rawValue)")
        }
        guard envelope.version == version else {
            throw .contractViolation("the version field says \(envelope.version) but the event-version header says \(version)")
        }
        guard envelope.key == message.keyString else {
            throw .contractViolation("the key field '\(envelope.key)' differs from the message key '\(message.keyString ?? "<none>")'")
        }
        guard envelope.key == envelope.event.key else {
            throw .contractViolation("the key '\(envelope.key)' is not the event's \(type.rawValue) key '\(envelope.event.key)'")
        }
        guard UUID(uuidString: envelope.eventId) != nil else {
            throw .contractViolation("eventId '\(envelope.eventId)' is not a UUID")
        }
        if let header = message.header(Header.eventId), header != envelope.eventId {
            throw .contractViolation("the event-id header differs from eventId")
        }
        guard envelope.sequence >= 1 else { throw .contractViolation("sequence \(envelope.sequence) is below 1") }
        guard Timestamp.isValid(envelope.occurredAt) else {
            throw .contractViolation("occurredAt '\(envelope.occurredAt)' is not RFC 3339 UTC with milliseconds")
        }
        guard envelope.topic.name == message.topic else {
            throw .contractViolation("\(type.rawValue) belongs on \(envelope.topic.name), not \(message.topic)")
        }
        guard envelope.correlationId == envelope.event.correlationId else {
            throw .contractViolation("correlationId '\(envelope.correlationId ?? "null")' is not the event's order '\(envelope.event.correlationId ?? "null")'")
        }
    }

}
