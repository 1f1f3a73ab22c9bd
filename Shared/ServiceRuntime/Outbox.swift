import DomainEvents
import Foundation
import GRDB
import Kafka

/// A message waiting to be published, written in the same transaction as the state change that caused it.
public struct OutboxRow: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "outbox"

    public var id: Int64?
    public var topic: String
    public var key: Data?
    public var value: Data
    public var headers: Data
    public var createdAt: String

    init(_ message: OutgoingMessage) throws {
        topic = message.topic
        key = message.key.map { Data($0) }
        value = Data(message.value)
        headers = try HeaderCodec.encode(message.headers)
        createdAt = Timestamp.now()
    }

    /// Read by hand rather than through Codable: the relay reads every row, and GRDB's Codable decoding of
    /// them cost more than reading them (see `ListedColumns`).
    public init(row: Row) throws {
        id = try row.decode(forColumn: "id")
        topic = try row.decode(forColumn: "topic")
        key = try row.decode(forColumn: "key")
        value = try row.decode(forColumn: "value")
        headers = try row.decode(forColumn: "headers")
        createdAt = try row.decode(forColumn: "createdAt")
    }

    public var message: OutgoingMessage {
        OutgoingMessage(topic: topic, key: key.map { Array($0) }, value: Array(value), headers: HeaderCodec.decode(headers))
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

/// An outbox row Kafka refused for good (too large, invalid), kept with the reason for an operator to see
/// (`emporium dlq parked`) instead of blocking every row behind it.
public struct ParkedOutboxRow: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "parkedOutboxRow"

    public var id: Int64?
    public var topic: String
    public var key: Data?
    public var value: Data
    public var headers: Data
    public var createdAt: String
    public var reason: String
    public var parkedAt: String

    init(_ row: OutboxRow, reason: String) {
        id = row.id
        topic = row.topic
        key = row.key
        value = row.value
        headers = row.headers
        createdAt = row.createdAt
        self.reason = reason
        parkedAt = Timestamp.now()
    }
}

/// What caused new events: the event being handled (or none, for an HTTP request) and its trace.
public struct EventCause: Sendable {
    public let eventId: String?
    public let trace: TraceContext

    public init(eventId: String?, trace: TraceContext) {
        self.eventId = eventId
        self.trace = trace
    }

    /// A request that carried no `traceparent` starts a new trace.
    public static func request(traceparent: String?) -> EventCause {
        EventCause(eventId: nil, trace: traceparent.flatMap(TraceContext.init(traceparent:)) ?? .newTrace())
    }
}

/// The transactional outbox: events enter it with their per-key sequence in the caller's transaction.
public enum Outbox {
    /// Appends events caused by `cause`, each with the next `sequence` of its (topic, key), a span of its own,
    /// and an ID derived from the cause and its place among them (or a random one for an HTTP request's events).
    @discardableResult
    public static func append(_ events: [DomainEvent], cause: EventCause, source: String, in db: Database) throws -> [Envelope] {
        try events.enumerated().map { index, event in
            let envelope = Envelope(
                eventId: cause.eventId.map { EventID.derived(source: source, causationId: $0, index: index) } ?? EventID.random(),
                key: event.key,
                sequence: try nextSequence(topic: event.topic.name, key: event.key, in: db),
                correlationId: event.correlationId, causationId: cause.eventId,
                occurredAt: Timestamp.now(), source: source, event: event)
            try insert(OutboxRow(try Wire.message(for: envelope, traceparent: cause.trace.child().traceparent)), in: db)
            return envelope
        }
    }

    /// Appends a raw message, such as a dead letter, to be published in order with everything else.
    public static func append(_ message: OutgoingMessage, in db: Database) throws {
        try insert(OutboxRow(message), in: db)
    }

    // Both run for every outgoing event, so they use cached statements rather than compiling SQL each time.

    private static func insert(_ row: OutboxRow, in db: Database) throws {
        try db.cachedStatement(sql: "INSERT INTO outbox (topic, key, value, headers, createdAt) VALUES (?, ?, ?, ?, ?)")
            .execute(arguments: [row.topic, row.key, row.value, row.headers, row.createdAt])
    }

    static func nextSequence(topic: String, key: String, in db: Database) throws -> Int64 {
        try Int64.fetchOne(db.cachedStatement(sql: """
            INSERT INTO keySequence (topic, key, last) VALUES (?, ?, 1)
            ON CONFLICT (topic, key) DO UPDATE SET last = last + 1
            RETURNING last
            """), arguments: [topic, key])!
    }

    /// The next event for (topic, key) gets `last + 1`: for a database rebuilt from the log.
    static func continueSequence(topic: String, key: String, after last: Int64, in db: Database) throws {
        try db.execute(sql: """
            INSERT INTO keySequence (topic, key, last) VALUES (?, ?, ?)
            ON CONFLICT (topic, key) DO UPDATE SET last = max(last, excluded.last)
            """, arguments: [topic, key, last])
    }

    /// The oldest rows written after row `id`, in the order they were written: what the relay publishes next.
    /// Row IDs only grow (`AUTOINCREMENT`, one writer at a time), so a row written later never has a lower one.
    static func oldest(_ limit: Int, after id: Int64, in db: Database) throws -> [OutboxRow] {
        try OutboxRow.fetchAll(
            db.cachedStatement(sql: "SELECT * FROM outbox WHERE id > ? ORDER BY id LIMIT ?"), arguments: [id, limit])
    }

    /// Rows `from...through`, oldest first, at most `limit`: for the relay going back to a lane it held.
    static func rows(from: Int64, through: Int64, limit: Int, in db: Database) throws -> [OutboxRow] {
        try OutboxRow.fetchAll(
            db.cachedStatement(sql: "SELECT * FROM outbox WHERE id >= ? AND id <= ? ORDER BY id LIMIT ?"), arguments: [from, through, limit])
    }

    public static func pendingCount(in db: Database) throws -> Int {
        try OutboxRow.fetchCount(db)
    }
}
