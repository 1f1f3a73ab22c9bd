import DomainEvents
import Foundation
import GRDB
import Kafka
import Logging

/// What became of the messages of one batch.
public struct BatchOutcome: Sendable {
    public var applied = 0
    public var skipped = 0
    public var duplicates = 0
    public var alreadyApplied = 0
    public var deadLettered = 0
    public var emitted = 0
    /// The same by topic and type, with the events' ages and what was emitted, for the metrics.
    public var tally = BatchTally()

    public init() {}

    public static func + (lhs: BatchOutcome, rhs: BatchOutcome) -> BatchOutcome {
        var sum = lhs
        sum.applied += rhs.applied
        sum.skipped += rhs.skipped
        sum.duplicates += rhs.duplicates
        sum.alreadyApplied += rhs.alreadyApplied
        sum.deadLettered += rhs.deadLettered
        sum.emitted += rhs.emitted
        return sum
    }
}

/// Applies a batch of consumed messages in one write transaction: each new event through the handler, its
/// effects and outgoing events with it, poison messages to the outbox as dead letters, and the group's offsets.
public struct BatchProcessor<Handler: EventHandler>: Sendable {
    public let handler: Handler
    public let group: String
    public let source: String
    public let retry: RetryPolicy
    public let logger: Logger

    public init(handler: Handler, group: String, source: String, retry: RetryPolicy = RetryPolicy(), logger: Logger) {
        self.handler = handler
        self.group = group
        self.source = source
        self.retry = retry
        self.logger = logger
    }

    public func process(_ messages: [ConsumedMessage], in database: DatabasePool) async throws -> BatchOutcome {
        try await database.write { db in try process(messages, in: db) }
    }

    public func process(_ messages: [ConsumedMessage], in db: Database) throws -> BatchOutcome {
        var outcome = BatchOutcome()
        let now = Date()
        var offsets = try Inbox.nextOffsets(group: group, in: db)
        for message in messages {
            if let next = offsets[message.topicPartition], message.offset < next {
                outcome.alreadyApplied += 1
                outcome.tally.count(message, .alreadyApplied)
                continue
            }
            try apply(message, in: db, now: now, outcome: &outcome)
            offsets[message.topicPartition] = message.offset + 1
        }
        try Inbox.save(offsets, group: group, in: db)
        return outcome
    }

    private func apply(_ message: ConsumedMessage, in db: Database, now: Date, outcome: inout BatchOutcome) throws {
        let envelope: Envelope
        do {
            let (type, _) = try Wire.route(message)
            guard handler.handledTypes.contains(type) else {
                outcome.skipped += 1
                outcome.tally.count(message, .skipped)
                return
            }
            envelope = try Wire.decode(message)
        } catch {
            try deadLetter(message, reason: error.description, in: db, outcome: &outcome)
            return
        }
        if try Inbox.contains(envelope.eventId, in: db) {
            outcome.duplicates += 1
            outcome.tally.count(message, .duplicate)
            return
        }
        // A dead letter sent back by `emporium dlq replay` is this key's past, not a sequence going backwards.
        if try !Inbox.forgetDeadLettered(envelope.eventId, group: group, in: db) {
            try Inbox.noteSequence(of: envelope, topic: message.topic, group: group, in: db)
        }
        let cause = EventCause(
            eventId: envelope.eventId,
            trace: message.header(Wire.Header.traceparent).flatMap(TraceContext.init(traceparent:)) ?? .newTrace())
        var attempt = 0
        while true {
            attempt += 1
            do {
                var emitted: [Envelope] = []
                try db.inSavepoint {
                    emitted = try Outbox.append(handler.handle(envelope, in: db), cause: cause, source: source, in: db)
                    try handler.emitted(emitted, in: db)
                    return .commit
                }
                outcome.applied += 1
                outcome.emitted += emitted.count
                outcome.tally.count(message, .applied)
                outcome.tally.applied(envelope, topic: message.topic, now: now)
                outcome.tally.emitted(emitted)
                break
            } catch {
                guard attempt < retry.attempts else {
                    let reason = "the handler failed \(attempt) times; last error: \(error)"
                    try deadLetter(message, reason: reason, in: db, outcome: &outcome)
                    // Not recorded as processed: once its cause is fixed, a replay of this event must apply it.
                    try Inbox.rememberDeadLettered(envelope.eventId, group: group, in: db)
                    return
                }
                logger.warning("handler failed on \(envelope.type.rawValue) \(envelope.eventId), attempt \(attempt): \(error)")
                Thread.sleep(forTimeInterval: Double(retry.backoff(afterAttempt: attempt).components.attoseconds) / 1e18)
            }
        }
        try Inbox.record(envelope.eventId, in: db)
    }

    private func deadLetter(_ message: ConsumedMessage, reason: String, in db: Database, outcome: inout BatchOutcome) throws {
        logger.error("dead-lettering \(message.topicPartition)@\(message.offset): \(reason)")
        try Outbox.append(DeadLetter.message(for: message, reason: reason, group: group), in: db)
        outcome.deadLettered += 1
        outcome.tally.count(message, .deadLettered)
    }
}
