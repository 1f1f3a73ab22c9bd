import DomainEvents
import GRDB

/// A service's reaction to the events it consumes: a function of (event, database) that changes the service's
/// state and returns the events it causes. It does no I/O of its own; the runtime applies it in the batch's
/// transaction and puts what it returns in the outbox.
public protocol EventHandler: Sendable {
    /// The types this service reacts to. Other known types are skipped on their headers alone.
    var handledTypes: Set<EventType> { get }

    func handle(_ envelope: Envelope, in db: Database) throws -> [DomainEvent]

    /// The envelopes the runtime made of what `handle` returned, in the same transaction: for a service that
    /// records its own events (order-service's timeline).
    func emitted(_ envelopes: [Envelope], in db: Database) throws
}

extension EventHandler {
    public func emitted(_ envelopes: [Envelope], in db: Database) throws {}
}

/// How often a failing handler is retried, with exponential backoff, before its event is dead-lettered.
public struct RetryPolicy: Sendable {
    public var attempts: Int
    public var initialBackoff: Duration

    public init(attempts: Int = 3, initialBackoff: Duration = .milliseconds(10)) {
        self.attempts = attempts
        self.initialBackoff = initialBackoff
    }

    func backoff(afterAttempt attempt: Int) -> Duration {
        initialBackoff * (1 << min(attempt - 1, 10))
    }
}
