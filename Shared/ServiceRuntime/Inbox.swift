import DomainEvents
import GRDB
import Kafka

/// What a consumer group has already applied: event IDs (so a redelivered or duplicated event has no effect)
/// and, per partition, the next offset to apply (so a message redelivered after a crash, even one without a
/// valid event ID, is recognised), both written in the transaction that applies the batch.
public enum Inbox {
    public static func contains(_ eventId: String, in db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM processedEvent WHERE eventId = ?", arguments: [eventId]) ?? false
    }

    public static func record(_ eventId: String, in db: Database) throws {
        try db.execute(sql: "INSERT INTO processedEvent (eventId, processedAt) VALUES (?, ?)", arguments: [eventId, Timestamp.now()])
    }

    public static func nextOffsets(group: String, in db: Database) throws -> [TopicPartition: Int64] {
        var offsets: [TopicPartition: Int64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT topic, partition, nextOffset FROM consumerOffset WHERE groupId = ?", arguments: [group]) {
            offsets[TopicPartition(row["topic"], row["partition"])] = row["nextOffset"]
        }
        return offsets
    }

    public static func save(_ offsets: [TopicPartition: Int64], group: String, in db: Database) throws {
        for (partition, next) in offsets {
            try db.execute(sql: """
                INSERT INTO consumerOffset (groupId, topic, partition, nextOffset) VALUES (?, ?, ?, ?)
                ON CONFLICT (groupId, topic, partition) DO UPDATE SET nextOffset = excluded.nextOffset
                """, arguments: [group, partition.topic, partition.partition, next])
        }
    }
}
