import DomainEvents
import GRDB
import Kafka
import Logging
import ServiceLifecycle
import ServiceRuntime
import Testing

@Suite(.serialized) struct ConsumerLoopTests {
    /// The database refuses every batch for a while (as a full disk would): nothing is skipped, nothing is
    /// dead-lettered, and once it accepts writes again every event is applied exactly once.
    @Test func aBatchTheDatabaseRefusesIsGivenBackAndRetriedUntilItApplies() async throws {
        let fixture = try RuntimeFixture()
        let database = try fixture.openDatabase()
        try await database.write { db in
            try db.execute(sql: """
                CREATE TABLE refusal (active INTEGER NOT NULL);
                INSERT INTO refusal VALUES (1);
                CREATE TRIGGER refuseWrites BEFORE INSERT ON consumerOffset WHEN (SELECT active FROM refusal)
                BEGIN SELECT RAISE(ABORT, 'simulated: the disk is full'); END;
                """)
        }
        try await fixture.produce((0..<120).map { try RuntimeFixture.orderPlaced($0) })

        let relay = OutboxRelay(database: database, databasePath: fixture.databasePath, configuration: fixture.configuration,
                                logger: fixture.logger)
        let loop = ConsumerLoop(processor: fixture.processor(), database: database, configuration: fixture.configuration,
                                topics: [.orders], relay: relay, logger: fixture.logger)
        let group = ServiceGroup(services: [relay, loop], gracefulShutdownSignals: [], logger: fixture.logger)
        let running = Task { try await group.run() }

        try await waitUntil(.seconds(60), "the database refuses three batches") { loop.status.failedBatches >= 3 }
        #expect(try await fixture.effectCounts(in: database).isEmpty, "a refused batch left an effect behind")
        try await database.write { db in try db.execute(sql: "UPDATE refusal SET active = 0") }

        try await waitUntil(.seconds(60), "all 120 orders applied") {
            try await fixture.effectCounts(in: database).count == 120
        }
        try await waitUntil(.seconds(60), "the confirmations relayed") { try await database.read(Outbox.pendingCount) == 0 }
        // The loop reads its own topic, so it also passes over the 120 confirmations it wrote (a type it skips).
        try await waitUntil(.seconds(60), "the stored positions reach the 240 messages of the topic") {
            try await database.read { db in try Int.fetchOne(db, sql: "SELECT sum(nextOffset) FROM consumerOffset") } == 240
        }
        await group.triggerGracefulShutdown()
        try await within(.seconds(30), "the loop stops") { try await running.value }

        let counts = try await fixture.effectCounts(in: database)
        #expect(counts.values.allSatisfy { $0 == 1 }, "an order was applied more than once: \(counts.filter { $0.value > 1 })")
        let confirmations = try await fixture.read(Topic.orders.name, count: 240)
        #expect(confirmations.filter { $0.header(Wire.Header.eventType) == EventType.orderConfirmed.rawValue }.count == 120)
        let deadLetters = try await KafkaAdmin(configuration: fixture.configuration).offsets(of: [Topic.orders.deadLetterName])
        #expect(deadLetters.map(\.high).reduce(0, +) == 0, "a refused batch is not poison")
        #expect(relay.deliveredCount == 120)
    }
}
