import GRDB
import Testing
@testable import ServiceRuntime

@Suite struct ServiceDatabaseTests {
    /// A database from before the inbox and sequence tables lost their rowid keeps every row through the
    /// migration, and the tables come out keyed by their primary key alone.
    @Test func theKeyedTablesLoseTheirRowidAndKeepTheirRows() throws {
        let database = try DatabaseQueue()
        var migrator = DatabaseMigrator()
        ServiceDatabase.registerRuntimeTables(in: &migrator)
        try migrator.migrate(database, upTo: "runtime-4-parked-outbox-rows")
        try database.write { db in
            try db.execute(sql: "INSERT INTO processedEvent (eventId, processedAt) VALUES ('event-1', '2026-12-01T23:00:00.000Z')")
            try db.execute(sql: "INSERT INTO consumedSequence (groupId, topic, key, last) VALUES ('payment-service', 'orders', 'customer-1', 7)")
            try db.execute(sql: "INSERT INTO keySequence (topic, key, last) VALUES ('payments', 'ord-1', 3)")
        }
        try migrator.migrate(database)
        let (definitions, kept) = try database.read { db in
            let definitions = try ["processedEvent", "consumedSequence", "keySequence"].map { table in
                try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = ?", arguments: [table]) ?? ""
            }
            let kept = [
                try String.fetchOne(db, sql: "SELECT processedAt FROM processedEvent WHERE eventId = 'event-1'"),
                try String.fetchOne(db, sql: "SELECT last FROM consumedSequence WHERE groupId = 'payment-service' AND topic = 'orders' AND key = 'customer-1'"),
                try String.fetchOne(db, sql: "SELECT last FROM keySequence WHERE topic = 'payments' AND key = 'ord-1'"),
            ]
            return (definitions, kept)
        }
        for definition in definitions { #expect(definition.hasSuffix("WITHOUT ROWID"), "\(definition)") }
        #expect(kept == ["2026-12-01T23:00:00.000Z", "7", "3"])
        // The primary keys still refuse a duplicate, which the inbox's duplicate check relies on.
        let (again, new, next) = try database.write { db in
            (try Inbox.record("event-1", in: db), try Inbox.record("event-2", in: db), try Outbox.nextSequence(topic: "payments", key: "ord-1", in: db))
        }
        #expect(again == false && new == true && next == 4)
    }
}
