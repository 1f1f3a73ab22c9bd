import Foundation

/// One event on the wire: identity, ordering, causality and the payload (docs/contract.md, "The envelope").
public struct Envelope: Sendable, Hashable {
    public var eventId: String
    public var version: Int
    public var key: String
    /// Per (topic, key): 1, 2, 3, … assigned by the writer with the state change.
    public var sequence: Int64
    public var correlationId: String?
    public var causationId: String?
    /// RFC 3339 UTC with milliseconds.
    public var occurredAt: String
    public var source: String
    public var event: DomainEvent

    public init(
        eventId: String, version: Int? = nil, key: String, sequence: Int64, correlationId: String?,
        causationId: String?, occurredAt: String, source: String, event: DomainEvent
    ) {
        self.eventId = eventId
        self.version = version ?? event.type.currentVersion
        self.key = key
        self.sequence = sequence
        self.correlationId = correlationId
        self.causationId = causationId
        self.occurredAt = occurredAt
        self.source = source
        self.event = event
    }

    public var type: EventType { event.type }
    public var topic: Topic { event.topic }
}

extension Envelope: Codable {
    enum CodingKeys: String, CodingKey {
        case eventId, type, version, key, sequence, correlationId, causationId, occurredAt, source, data
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let typeName = try container.decode(String.self, forKey: .type)
        guard let type = EventType(rawValue: typeName) else {
            throw EventDecodingError.unknownType(typeName)
        }
        eventId = try container.decode(String.self, forKey: .eventId)
        version = try container.decode(Int.self, forKey: .version)
        key = try container.decode(String.self, forKey: .key)
        sequence = try container.decode(Int64.self, forKey: .sequence)
        correlationId = try container.decodeIfPresent(String.self, forKey: .correlationId)
        causationId = try container.decodeIfPresent(String.self, forKey: .causationId)
        occurredAt = try container.decode(String.self, forKey: .occurredAt)
        source = try container.decode(String.self, forKey: .source)
        event = switch type {
        case .orderPlaced: .orderPlaced(try container.decode(OrderPlaced.self, forKey: .data))
        case .orderConfirmed: .orderConfirmed(try container.decode(OrderConfirmed.self, forKey: .data))
        case .orderCancelled: .orderCancelled(try container.decode(OrderCancelled.self, forKey: .data))
        case .paymentAuthorized: .paymentAuthorized(try container.decode(PaymentAuthorized.self, forKey: .data))
        case .paymentDeclined: .paymentDeclined(try container.decode(PaymentDeclined.self, forKey: .data))
        case .paymentCaptured: .paymentCaptured(try container.decode(PaymentCaptured.self, forKey: .data))
        case .paymentRefunded: .paymentRefunded(try container.decode(PaymentRefunded.self, forKey: .data))
        case .stockReserved: .stockReserved(try container.decode(StockReserved.self, forKey: .data))
        case .stockShortage: .stockShortage(try container.decode(StockShortage.self, forKey: .data))
        case .stockReleased: .stockReleased(try container.decode(StockReleased.self, forKey: .data))
        case .stockRestocked: .stockRestocked(try container.decode(StockRestocked.self, forKey: .data))
        case .notificationSent: .notificationSent(try container.decode(NotificationSent.self, forKey: .data))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(eventId, forKey: .eventId)
        try container.encode(type.rawValue, forKey: .type)
        try container.encode(version, forKey: .version)
        try container.encode(key, forKey: .key)
        try container.encode(sequence, forKey: .sequence)
        if let correlationId { try container.encode(correlationId, forKey: .correlationId) }
        try container.encode(causationId, forKey: .causationId)
        try container.encode(occurredAt, forKey: .occurredAt)
        try container.encode(source, forKey: .source)
        switch event {
        case .orderPlaced(let data): try container.encode(data, forKey: .data)
        case .orderConfirmed(let data): try container.encode(data, forKey: .data)
        case .orderCancelled(let data): try container.encode(data, forKey: .data)
        case .paymentAuthorized(let data): try container.encode(data, forKey: .data)
        case .paymentDeclined(let data): try container.encode(data, forKey: .data)
        case .paymentCaptured(let data): try container.encode(data, forKey: .data)
        case .paymentRefunded(let data): try container.encode(data, forKey: .data)
        case .stockReserved(let data): try container.encode(data, forKey: .data)
        case .stockShortage(let data): try container.encode(data, forKey: .data)
        case .stockReleased(let data): try container.encode(data, forKey: .data)
        case .stockRestocked(let data): try container.encode(data, forKey: .data)
        case .notificationSent(let data): try container.encode(data, forKey: .data)
        }
    }
}

/// Why a message is not a valid event of the contract; the description is the `dlq-reason` sentence.
public enum EventDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    case missingHeader(String)
    case unknownType(String)
    case unsupportedVersion(type: String, version: String)
    case oversized(bytes: Int, limit: Int)
    case invalidJSON(String)
    case contractViolation(String)

    public var description: String {
        switch self {
        case .missingHeader(let name): "the \(name) header is missing"
        case .unknownType(let type): "unknown event type '\(type)'"
        case .unsupportedVersion(let type, let version): "unsupported version '\(version)' of \(type)"
        case .oversized(let bytes, let limit): "the message is \(bytes) bytes, over the \(limit)-byte limit"
        case .invalidJSON(let detail): "the value is not valid JSON: \(detail)"
        case .contractViolation(let detail): "the event does not match the contract: \(detail)"
        }
    }
}
