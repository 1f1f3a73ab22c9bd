import DomainEvents
import Foundation
import GRDB
import ServiceRuntime
import Testing

@Suite struct RetentionTests {
    /// Old inbox rows go, new ones stay, in steps smaller than the table; anomalies are kept by count.
    @Test func aPassForgetsWhatIsOlderThanTheRetentionAndKeepsTheRest() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        let now = Date()
        let old = Timestamp.format(now.addingTimeInterval(-7200))
        let recent = Timestamp.format(now.addingTimeInterval(-60))
        try await database.write { db in
            for n in 0..<1_203 { try db.execute(sql: "INSERT INTO processedEvent VALUES (?, ?)", arguments: ["old-\(n)", old]) }
            for n in 0..<7 { try db.execute(sql: "INSERT INTO processedEvent VALUES (?, ?)", arguments: ["recent-\(n)", recent]) }
            for n in 0..<10_005 {
                try db.execute(sql: "INSERT INTO sequenceAnomaly (groupId, topic, key, previous, received, eventId) VALUES ('g', 't', 'k', 1, 1, ?)",
                               arguments: ["anomaly-\(n)"])
            }
        }
        let pruner = Pruner(database: database, rules: RetentionRule.runtime, retention: .seconds(3600), step: 100, logger: fixture.logger)
        #expect(try await pruner.pass(now: now) == 1_203 + 5)
        let (kept, anomalies, oldest) = try await database.read { db in
            (try String.fetchAll(db, sql: "SELECT eventId FROM processedEvent ORDER BY eventId"),
             try Int.fetchOne(db, sql: "SELECT count(*) FROM sequenceAnomaly"),
             try String.fetchOne(db, sql: "SELECT eventId FROM sequenceAnomaly ORDER BY id LIMIT 1"))
        }
        #expect(kept == (0..<7).map { "recent-\($0)" })
        #expect(anomalies == 10_000 && oldest == "anomaly-5")
        #expect(try await pruner.pass(now: now) == 0, "a second pass finds nothing more")
    }
}
