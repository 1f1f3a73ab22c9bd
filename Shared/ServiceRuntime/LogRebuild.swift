import DomainEvents
import Foundation
import GRDB
import Kafka

/// Rebuilds a service's lost database from the log. The topic the service writes is the record of every decision
/// it made, so its events are read back from the beginning and the service says what each means for its tables;
/// the per-key sequence counters continue from the last sequence it wrote, or its next event for a key would go
/// backwards; and the positions of the topics it consumes are rewound to their oldest offset, so that when it
/// starts, its consumer re-reads them through its handler (the database, not Kafka, says where it resumes).
///
/// What only the lost database held cannot come back: an outbox row not yet relayed, and whatever the service keeps
/// that is not on the wire (order-service's Idempotency-Keys).
public struct LogRebuild: Sendable {
    public let settings: RuntimeSettings

    public init(settings: RuntimeSettings) {
        self.settings = settings
    }

    public struct Summary: Sendable {
        /// The service's own events read back and applied, each once.
        public var ownEvents = 0
        /// Copies of its events (a relay re-sends after a crash) and events an interrupted run already applied.
        public var copies = 0
        /// Messages on its topic that are not its events (a dead letter re-driven by hand, a stray write).
        public var otherMessages = 0
        /// Keys whose sequence counter was restored.
        public var keys = 0
        /// Consumed partitions whose position was rewound.
        public var partitionsRewound = 0
        /// Consumed partitions whose log no longer starts at 0: what they lost is not re-read.
        public var partitionsMissingHistory: [TopicPartition] = []
    }

    public enum Refusal: Error, CustomStringConvertible {
        case notEmpty(String)
        case historyLost([PartitionOffsets])
        case unfinished(service: String, database: String)

        public var description: String {
            switch self {
            case .notEmpty(let what):
                "the database already holds \(what); rebuild writes only into an empty one (stop every instance and delete it first)"
            case .unfinished(let service, let database):
                "the rebuild of \(database) was cut short: run \(service) --rebuild again before starting the service"
            case .historyLost(let partitions):
                "the log no longer holds every event this service wrote: "
                    + partitions.map { "\($0.partition) starts at offset \($0.low)" }.joined(separator: ", ")
            }
        }
    }

    /// Whether a rebuild began in this database and did not finish: running it again resumes it, so the service's
    /// check that its database is empty does not apply.
    public static func wasInterrupted(_ db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM rebuildInProgress)") ?? false
    }

    /// Reads `topic` from offset 0 to the end it has now, hands each of this service's own events to `apply` once
    /// (by event ID) in the transaction that stores it, then rewinds the positions of `consumed`. A run cut short
    /// leaves a mark; the next run reads from offset 0 again and skips what the first applied.
    public func run(
        writes topic: Topic, consumes consumed: [Topic], into database: DatabasePool,
        apply: @escaping @Sendable (Envelope, Database) throws -> Void
    ) async throws -> Summary {
        let admin = try KafkaAdmin(configuration: settings.kafka)
        let lost = try await admin.offsets(of: [topic.name]).filter { $0.low > 0 }
        guard lost.isEmpty else { throw Refusal.historyLost(lost) }

        var summary = Summary()
        var lastSequence: [String: Int64] = [:]
        // A group of its own that no one shares: it starts at the beginning, and its offsets mean nothing later.
        let readerGroup = "\(settings.group).rebuild-\(UUID().uuidString.prefix(8).lowercased())"
        let source = settings.service
        try await database.write { db in
            if try !Self.wasInterrupted(db) {
                try db.execute(sql: "INSERT INTO rebuildInProgress (startedAt) VALUES (?)", arguments: [Timestamp.now()])
            }
        }
        try await TopicReader(configuration: settings.kafka).forEachBatchToEnd(topic.name, group: readerGroup, timeout: .seconds(300)) { batch in
            let envelopes = batch.compactMap { message in (try? Wire.decode(message, checkingValues: false)).flatMap { $0.source == source ? $0 : nil } }
            summary.otherMessages += batch.count - envelopes.count
            let copies = try await database.write { db in
                var copies = 0
                for envelope in envelopes {
                    try db.cachedStatement(sql: "INSERT INTO rebuiltEvent (eventId) VALUES (?) ON CONFLICT DO NOTHING")
                        .execute(arguments: [envelope.eventId])
                    if db.changesCount == 0 { copies += 1 } else { try apply(envelope, db) }
                }
                return copies
            }
            summary.copies += copies
            summary.ownEvents += envelopes.count - copies
            for envelope in envelopes { lastSequence[envelope.key] = max(lastSequence[envelope.key] ?? 0, envelope.sequence) }
        }
        let sequences = lastSequence
        summary.keys = sequences.count

        let positions = try await admin.offsets(of: consumed.map(\.name))
        summary.partitionsRewound = positions.count
        summary.partitionsMissingHistory = positions.filter { $0.low > 0 }.map(\.partition)
        let group = settings.group
        try await database.write { db in
            for (key, last) in sequences {
                try Outbox.continueSequence(topic: topic.name, key: key, after: last, in: db)
            }
            try Inbox.save(Dictionary(uniqueKeysWithValues: positions.map { ($0.partition, $0.low) }), group: group, in: db)
            try db.execute(sql: "DELETE FROM rebuiltEvent; DELETE FROM rebuildInProgress")
        }
        return summary
    }
}
