import DomainEvents
import GRDB
import Kafka

/// What a consumer group has already applied: event IDs (so a redelivered or duplicated event has no effect)
/// and, per partition, the next offset to apply (so a message redelivered after a crash, even one without a
/// valid event ID, is recognised), both written in the transaction that applies the batch.
public enum Inbox {
    // These run for every event, so they use cached statements: compiling SQL each time costs more than running it.

    /// Records the event as processed; false if it already was. One statement is both the check and the record.
    public static func record(_ eventId: String, in db: Database) throws -> Bool {
        try db.cachedStatement(sql: "INSERT INTO processedEvent (eventId, processedAt) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .execute(arguments: [eventId, Timestamp.now()])
        return db.changesCount > 0
    }

    /// Notes the sequence of a new event this group handles. A consumer may skip types it does not react to,
    /// so what it handles of a key must increase, not necessarily by one; anything else is recorded as an anomaly.
    /// The upsert leaves the row alone, and changes nothing, exactly when the sequence did not increase.
    static func noteSequence(of envelope: Envelope, topic: String, group: String, in db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO consumedSequence (groupId, topic, key, last) VALUES (?, ?, ?, ?)
            ON CONFLICT (groupId, topic, key) DO UPDATE SET last = excluded.last WHERE excluded.last > consumedSequence.last
            """).execute(arguments: [group, topic, envelope.key, envelope.sequence])
        guard db.changesCount == 0 else { return }
        let previous = try Int64.fetchOne(
            db, sql: "SELECT last FROM consumedSequence WHERE groupId = ? AND topic = ? AND key = ?",
            arguments: [group, topic, envelope.key]) ?? 0
        try db.execute(sql: """
            INSERT INTO sequenceAnomaly (groupId, topic, key, previous, received, eventId) VALUES (?, ?, ?, ?, ?, ?)
            """, arguments: [group, topic, envelope.key, previous, envelope.sequence, envelope.eventId])
    }

    /// An event whose handler kept failing went to the dead-letter topic unprocessed; remembering it lets
    /// its replay be told from a key's sequence going backwards.
    static func rememberDeadLettered(_ eventId: String, group: String, in db: Database) throws {
        try db.execute(sql: "INSERT OR IGNORE INTO deadLetteredEvent (groupId, eventId) VALUES (?, ?)", arguments: [group, eventId])
    }

    /// Whether the group has dead-lettered events a replay may bring back.
    static func awaitsReplays(group: String, in db: Database) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM deadLetteredEvent WHERE groupId = ?)"), arguments: [group]) ?? false
    }

    /// True (and forgotten) if this event was dead-lettered by this group and now comes back.
    static func forgetDeadLettered(_ eventId: String, group: String, in db: Database) throws -> Bool {
        try db.cachedStatement(sql: "DELETE FROM deadLetteredEvent WHERE groupId = ? AND eventId = ?").execute(arguments: [group, eventId])
        return db.changesCount > 0
    }

    public static func sequenceAnomalies(in db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT count(*) FROM sequenceAnomaly") ?? 0
    }

    public static func nextOffsets(group: String, in db: Database) throws -> [TopicPartition: Int64] {
        var offsets: [TopicPartition: Int64] = [:]
        let statement = try db.cachedStatement(sql: "SELECT topic, partition, nextOffset FROM consumerOffset WHERE groupId = ?")
        for row in try Row.fetchAll(statement, arguments: [group]) {
            offsets[TopicPartition(row["topic"], row["partition"])] = row["nextOffset"]
        }
        return offsets
    }

    public static func save(_ offsets: [TopicPartition: Int64], group: String, in db: Database) throws {
        let statement = try db.cachedStatement(sql: """
            INSERT INTO consumerOffset (groupId, topic, partition, nextOffset) VALUES (?, ?, ?, ?)
            ON CONFLICT (groupId, topic, partition) DO UPDATE SET nextOffset = excluded.nextOffset
            """)
        for (partition, next) in offsets {
            try statement.execute(arguments: [group, partition.topic, partition.partition, next])
        }
    }
}
