import Foundation
import Glibc
import GRDB

/// Opens a service's SQLite database: WAL (a `DatabasePool`), a busy timeout so that instances sharing the file
/// wait for each other, and the runtime's tables migrated beside the service's own.
public enum ServiceDatabase {
    /// How much of a commit survives a power loss.
    public enum Durability: String, Sendable {
        /// `synchronous=NORMAL`: the last commits may be lost. Enough for what Kafka can give again: positions
        /// live in the database, so a consumer whose tail was lost re-reads it (see `ConsumerLoop`). What leaves
        /// the process is synced first (`syncCommitted`).
        case replayable = "NORMAL"
        /// `synchronous=FULL`: a commit is on disk when it returns. For what only the database holds, such as an
        /// order accepted over HTTP, which must not vanish after its 202.
        case durable = "FULL"
    }

    /// Puts every transaction committed so far on disk, whatever the connection's `synchronous` setting: in WAL
    /// mode a commit is appended to the `-wal` file, and syncing that file (any descriptor will do: a sync is per
    /// file) makes it durable. The relay calls this before anything it read leaves for Kafka, and an HTTP write
    /// that Kafka cannot give back (a restock) before it answers, so that a power loss cannot take back what
    /// others have already seen, while the consumers' own commits, which Kafka can replay, skip the sync.
    public static func syncCommitted(at path: String) throws {
        let wal = Glibc.open(path + "-wal", O_RDONLY | O_CLOEXEC)
        // No WAL file: every commit went into the database file by a checkpoint, which syncs.
        guard wal >= 0 else { return }
        defer { Glibc.close(wal) }
        guard fdatasync(wal) == 0 else {
            throw DatabaseError(message: "cannot sync \(path)-wal: \(String(cString: strerror(errno)))")
        }
    }

    public static func open(
        at path: String, durability: Durability = .replayable, migrations: (inout DatabaseMigrator) -> Void = { _ in }
    ) throws -> DatabasePool {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // Instances sharing the file start together; one opens and migrates while the others wait, then find it
        // done. Opening is inside the lock too: two connections switching a new file to WAL at once can deadlock,
        // and SQLite then answers one "database is locked" at once, without waiting out the busy timeout (seen
        // once in CI, `deploy/run.sh` with two instances of each service on a loaded machine).
        let lock = Glibc.open(path + ".migration-lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lock >= 0 else { throw DatabaseError(message: "cannot open \(path).migration-lock: \(String(cString: strerror(errno)))") }
        defer { Glibc.close(lock) }
        flock(lock, LOCK_EX)
        defer { flock(lock, LOCK_UN) }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(durability.rawValue)")
        }
        let pool = try DatabasePool(path: path, configuration: configuration)
        var migrator = DatabaseMigrator()
        registerRuntimeTables(in: &migrator)
        migrations(&migrator)
        try migrator.migrate(pool)
        return pool
    }

    /// The outbox, the inbox of processed events, per-key sequences and the consumer offsets.
    static func registerRuntimeTables(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("runtime-1") { db in
            try db.create(table: "outbox") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("topic", .text).notNull()
                table.column("key", .blob)
                table.column("value", .blob).notNull()
                table.column("headers", .blob).notNull()
                table.column("createdAt", .text).notNull()
            }
            try db.create(table: "processedEvent") { table in
                table.primaryKey("eventId", .text)
                table.column("processedAt", .text).notNull()
            }
            try db.create(table: "keySequence") { table in
                table.column("topic", .text).notNull()
                table.column("key", .text).notNull()
                table.column("last", .integer).notNull()
                table.primaryKey(["topic", "key"])
            }
            try db.create(table: "consumerOffset") { table in
                table.column("groupId", .text).notNull()
                table.column("topic", .text).notNull()
                table.column("partition", .integer).notNull()
                table.column("nextOffset", .integer).notNull()
                table.primaryKey(["groupId", "topic", "partition"])
            }
        }
        migrator.registerMigration("runtime-2-consumed-sequences") { db in
            try db.create(table: "consumedSequence") { table in
                table.column("groupId", .text).notNull()
                table.column("topic", .text).notNull()
                table.column("key", .text).notNull()
                table.column("last", .integer).notNull()
                table.primaryKey(["groupId", "topic", "key"])
            }
            try db.create(table: "sequenceAnomaly") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("groupId", .text).notNull()
                table.column("topic", .text).notNull()
                table.column("key", .text).notNull()
                table.column("previous", .integer).notNull()
                table.column("received", .integer).notNull()
                table.column("eventId", .text).notNull()
            }
        }
        migrator.registerMigration("runtime-3-dead-lettered-events") { db in
            try db.create(table: "deadLetteredEvent") { table in
                table.column("groupId", .text).notNull()
                table.column("eventId", .text).notNull()
                table.primaryKey(["groupId", "eventId"])
            }
        }
        migrator.registerMigration("runtime-4-parked-outbox-rows") { db in
            try db.create(table: "parkedOutboxRow") { table in
                table.primaryKey("id", .integer)
                table.column("topic", .text).notNull()
                table.column("key", .blob)
                table.column("value", .blob).notNull()
                table.column("headers", .blob).notNull()
                table.column("createdAt", .text).notNull()
                table.column("reason", .text).notNull()
                table.column("parkedAt", .text).notNull()
            }
        }
        // A table whose primary key is not its rowid keeps a second b-tree for that key, and every event wrote to
        // both: these three take a row or an update per event, so they keep their rows in their key's b-tree alone.
        migrator.registerMigration("runtime-5-keyed-tables-without-rowid") { db in
            let tables: [(name: String, columns: [(String, String)], key: [String])] = [
                ("processedEvent", [("eventId", "TEXT"), ("processedAt", "TEXT")], ["eventId"]),
                ("consumedSequence", [("groupId", "TEXT"), ("topic", "TEXT"), ("key", "TEXT"), ("last", "INTEGER")], ["groupId", "topic", "key"]),
                ("keySequence", [("topic", "TEXT"), ("key", "TEXT"), ("last", "INTEGER")], ["topic", "key"]),
            ]
            func quoted(_ names: [String]) -> String { names.map { "\"\($0)\"" }.joined(separator: ", ") }
            for table in tables {
                let definitions = table.columns.map { "\"\($0.0)\" \($0.1) NOT NULL" }.joined(separator: ", ")
                let names = quoted(table.columns.map(\.0))
                try db.execute(sql: """
                    CREATE TABLE \(table.name)New (\(definitions), PRIMARY KEY (\(quoted(table.key)))) WITHOUT ROWID;
                    INSERT INTO \(table.name)New (\(names)) SELECT \(names) FROM \(table.name);
                    DROP TABLE \(table.name);
                    ALTER TABLE \(table.name)New RENAME TO \(table.name);
                    """)
            }
        }
        // `--rebuild`'s progress: the events it applied (a log may hold copies of one) while it runs, so that a
        // rebuild cut short can be run again; emptied when it finishes.
        migrator.registerMigration("runtime-6-rebuilt-events") { db in
            try db.execute(sql: "CREATE TABLE rebuiltEvent (eventId TEXT NOT NULL PRIMARY KEY) WITHOUT ROWID")
            try db.execute(sql: "CREATE TABLE rebuildInProgress (startedAt TEXT NOT NULL)")
        }
    }
}
