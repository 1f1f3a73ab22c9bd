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
        sum.tally.merge(rhs.tally)
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

    /// Applies the batch. A handler that fails is retried after a backoff, *outside* the write transaction: what
    /// came before the failing message is committed, SQLite's write lock is released while it waits (so HTTP
    /// requests and the relay sharing the database go on), and the rest is applied in a new transaction.
    ///
    /// `logRestarts` (from `ConsumerBatch`) names partitions whose log is now shorter than the stored position:
    /// their position moves back to where the log starts, in the batch's first transaction, so that what the log
    /// holds now is applied rather than taken for what was; the inbox's event IDs keep a copy from applying twice.
    public func process(
        _ messages: [ConsumedMessage], logRestarts: [TopicPartition: Int64] = [:], in database: DatabasePool
    ) async throws -> BatchOutcome {
        var outcome = BatchOutcome()
        var start = messages.startIndex
        var attempt = 1
        var restarts = logRestarts
        while true {
            let part = try await database.write { [start, attempt, restarts] db in
                try process(messages[start...], in: db, attempt: attempt, logRestarts: restarts)
            }
            restarts = [:]
            outcome = outcome + part.outcome
            guard let failure = part.failure else { return outcome }
            logger.warning("handler failed on \(failure.type) \(failure.eventId), attempt \(attempt): \(failure.error)")
            try await Task.sleep(for: retry.backoff(afterAttempt: attempt))
            attempt = failure.nextAttempt(after: attempt, startedAt: start)
            start = failure.index
        }
    }

    /// Applies the batch in the caller's transaction, retrying a failing handler at once (for tests and tools).
    public func process(_ messages: [ConsumedMessage], in db: Database) throws -> BatchOutcome {
        var outcome = BatchOutcome()
        var start = messages.startIndex
        var attempt = 1
        while true {
            let part = try process(messages[start...], in: db, attempt: attempt)
            outcome = outcome + part.outcome
            guard let failure = part.failure else { return outcome }
            attempt = failure.nextAttempt(after: attempt, startedAt: start)
            start = failure.index
        }
    }

    /// A handler failure to retry: the message's index in the batch and what went wrong.
    struct HandlerFailure: Sendable {
        let index: Int
        let type: String
        let eventId: String
        let error: String

        /// The failing message's next try: `attempt` counted the tries of the message the part started at, so a
        /// later message that failed has had one try, not that message's.
        func nextAttempt(after attempt: Int, startedAt start: Int) -> Int {
            index == start ? attempt + 1 : 2
        }
    }

    /// Applies messages in order until one's handler fails with retries left; `attempt` counts the first
    /// message's tries so far. Offsets are saved up to, not including, the message that failed.
    func process(
        _ messages: ArraySlice<ConsumedMessage>, in db: Database, attempt: Int, logRestarts: [TopicPartition: Int64] = [:]
    ) throws -> (outcome: BatchOutcome, failure: HandlerFailure?) {
        var outcome = BatchOutcome()
        let now = Date()
        var offsets = try Inbox.nextOffsets(group: group, in: db)
        for (partition, start) in logRestarts where offsets[partition].map({ $0 > start }) ?? false {
            logger.critical("\(partition)'s log restarted at offset \(start), below the stored position \(offsets[partition]!): moving the position back")
            offsets[partition] = start
        }
        var awaitsReplays = try Inbox.awaitsReplays(group: group, in: db)
        var failure: HandlerFailure?
        for index in messages.indices {
            let message = messages[index]
            if let next = offsets[message.topicPartition], message.offset < next {
                outcome.alreadyApplied += 1
                outcome.tally.count(message, .alreadyApplied)
                continue
            }
            let tries = index == messages.startIndex ? attempt : 1
            if let error = try apply(message, in: db, now: now, attempt: tries, awaitsReplays: &awaitsReplays, outcome: &outcome) {
                failure = HandlerFailure(index: index, type: message.header(Wire.Header.eventType) ?? "?",
                                         eventId: message.header(Wire.Header.eventId) ?? "?", error: "\(error)")
                break
            }
            offsets[message.topicPartition] = message.offset + 1
        }
        try Inbox.save(offsets, group: group, in: db)
        return (outcome, failure)
    }

    /// Applies one message; returns the handler's error if it failed and may be tried again.
    /// `awaitsReplays` says whether this group has dead-lettered events a replay may bring back: rarely, so the
    /// batch asks once rather than every event.
    private func apply(
        _ message: ConsumedMessage, in db: Database, now: Date, attempt: Int, awaitsReplays: inout Bool, outcome: inout BatchOutcome
    ) throws -> (any Error)? {
        let envelope: Envelope
        do {
            let (type, _) = try Wire.route(message)
            guard handler.handledTypes.contains(type) else {
                outcome.skipped += 1
                outcome.tally.count(message, .skipped)
                return nil
            }
            envelope = try Wire.decode(message)
        } catch {
            try deadLetter(message, reason: error.description, in: db, outcome: &outcome)
            return nil
        }
        let cause = EventCause(
            eventId: envelope.eventId,
            trace: message.header(Wire.Header.traceparent).flatMap(TraceContext.init(traceparent:)) ?? .newTrace())
        var duplicate = false
        do {
            var emitted: [Envelope] = []
            try Savepoint.run(in: db) {
                // Recorded first, so that the insert is also the duplicate check; a failure rolls it back with the rest.
                guard try Inbox.record(envelope.eventId, in: db) else {
                    duplicate = true
                    return
                }
                emitted = try Outbox.append(handler.handle(envelope, in: db), cause: cause, source: source, in: db)
                try handler.emitted(emitted, in: db)
            }
            if duplicate {
                outcome.duplicates += 1
                outcome.tally.count(message, .duplicate)
                return nil
            }
            outcome.applied += 1
            outcome.emitted += emitted.count
            outcome.tally.count(message, .applied)
            outcome.tally.applied(envelope, topic: message.topic, now: now)
            outcome.tally.emitted(emitted)
        } catch {
            guard attempt >= retry.attempts else { return error }
            let reason = "the handler failed \(attempt) times; last error: \(error)"
            try deadLetter(message, reason: reason, in: db, outcome: &outcome)
            // Not recorded as processed: once its cause is fixed, a replay of this event must apply it.
            try Inbox.rememberDeadLettered(envelope.eventId, group: group, in: db)
            awaitsReplays = true
            return nil
        }
        // A dead letter sent back by `emporium dlq replay` is this key's past, not a sequence going backwards.
        if try !(awaitsReplays && Inbox.forgetDeadLettered(envelope.eventId, group: group, in: db)) {
            try Inbox.noteSequence(of: envelope, topic: message.topic, group: group, in: db)
        }
        return nil
    }

    private func deadLetter(_ message: ConsumedMessage, reason: String, in db: Database, outcome: inout BatchOutcome) throws {
        logger.error("dead-lettering \(message.topicPartition)@\(message.offset): \(DeadLetter.capped(reason))")
        try Outbox.append(DeadLetter.message(for: message, reason: reason, group: group), in: db)
        outcome.deadLettered += 1
        outcome.tally.count(message, .deadLettered)
    }
}

/// A savepoint through statements each connection prepares once: `Database.inSavepoint` compiles its `SAVEPOINT`
/// and `RELEASE` on every call, and the runtime opens one for every event it applies.
enum Savepoint {
    static func run(in db: Database, _ body: () throws -> Void) throws {
        try db.cachedStatement(sql: "SAVEPOINT applying").execute()
        do {
            try body()
        } catch {
            // SQLite may have rolled the whole transaction back already (a full disk, say): then there is no savepoint.
            if db.isInsideTransaction {
                try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT applying").execute()
                try db.cachedStatement(sql: "RELEASE SAVEPOINT applying").execute()
            }
            throw error
        }
        try db.cachedStatement(sql: "RELEASE SAVEPOINT applying").execute()
    }
}
