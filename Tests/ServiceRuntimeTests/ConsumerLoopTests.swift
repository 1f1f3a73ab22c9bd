import DomainEvents
import Foundation
import GRDB
import Kafka
import Logging
import ServiceLifecycle
import ServiceRuntime
import Synchronization
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

        let running = RunningLoop(fixture: fixture, database: database)
        try await waitUntil(.seconds(60), "the database refuses three batches") { running.loop.status.failedBatches >= 3 }
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
        try await running.stop()

        let counts = try await fixture.effectCounts(in: database)
        #expect(counts.values.allSatisfy { $0 == 1 }, "an order was applied more than once: \(counts.filter { $0.value > 1 })")
        let confirmations = try await fixture.read(Topic.orders.name, count: 240)
        #expect(confirmations.filter { $0.header(Wire.Header.eventType) == EventType.orderConfirmed.rawValue }.count == 120)
        let deadLetters = try await KafkaAdmin(configuration: fixture.configuration).offsets(of: [Topic.orders.deadLetterName])
        #expect(deadLetters.map(\.high).reduce(0, +) == 0, "a refused batch is not poison")
        #expect(running.relay.deliveredCount == 120)
    }

    /// A database restored from a copy taken mid-run (or one whose last commits a power loss took) resumes where
    /// it stands, not where Kafka's committed offsets are: it re-applies what it lost and re-emits the very same
    /// events, which their consumers skip as duplicates.
    @Test func aDatabaseRestoredFromAnEarlierCopyReappliesWhatItLostAndReemitsTheSameEvents() async throws {
        let fixture = try RuntimeFixture()
        var database: DatabasePool? = try fixture.openDatabase()
        // Every order applied, the outbox empty, and every message of the topic (the loop reads its own
        // confirmations too) passed over.
        func settled(_ orders: Int, messages: Int) -> @Sendable () async throws -> Bool {
            { [database] in
                try await database!.read { db in
                    try Int.fetchOne(db, sql: "SELECT count(*) FROM effect") == orders && Outbox.pendingCount(in: db) == 0
                        && Int.fetchOne(db, sql: "SELECT sum(nextOffset) FROM consumerOffset") == messages
                }
            }
        }
        try await fixture.produce((0..<60).map { try RuntimeFixture.orderPlaced($0) })
        try await runLoop(fixture, database!, until: settled(60, messages: 120))
        let copy = fixture.directory.appendingPathComponent("copy.sqlite").path
        try database!.backup(to: try DatabaseQueue(path: copy))

        try await fixture.produce((60..<120).map { try RuntimeFixture.orderPlaced($0) })
        try await runLoop(fixture, database!, until: settled(120, messages: 240))
        try database!.close()
        database = nil
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: fixture.databasePath + suffix) }
        try FileManager.default.copyItem(atPath: copy, toPath: fixture.databasePath)
        database = try fixture.openDatabase()
        #expect(try await fixture.effectCounts(in: database!).count == 60, "the copy holds the first 60 orders")

        try await runLoop(fixture, database!, until: settled(120, messages: 300))
        let counts = try await fixture.effectCounts(in: database!)
        #expect(counts.count == 120 && counts.values.allSatisfy { $0 == 1 })
        let confirmations = try await fixture.read(Topic.orders.name, count: 300)
            .filter { $0.header(Wire.Header.eventType) == EventType.orderConfirmed.rawValue }
        let idsByOrder = Dictionary(grouping: confirmations.compactMap { try? Wire.decode($0) }, by: { $0.correlationId ?? "" })
            .mapValues { Set($0.map(\.eventId)) }
        #expect(confirmations.count == 180, "orders 60 to 119 were confirmed twice on the wire, the first 60 once")
        #expect(idsByOrder.count == 120 && idsByOrder.values.allSatisfy { $0.count == 1 }, "a re-emitted event got a new ID")
    }

    /// Runs a consumer loop and its relay until `condition` holds, then stops them gracefully.
    private func runLoop(_ fixture: RuntimeFixture, _ database: DatabasePool, until condition: @escaping @Sendable () async throws -> Bool) async throws {
        let running = RunningLoop(fixture: fixture, database: database)
        try await waitUntil(.seconds(60), "the loop catches up", condition)
        try await running.stop()
    }

    /// A handler that fails is retried after its backoff with SQLite's write lock released: another writer
    /// sharing the database (an HTTP request, the relay) gets it at once meanwhile.
    @Test func aFailingHandlerWaitsForItsRetryOutsideTheWriteTransaction() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        try await fixture.produce([try RuntimeFixture.orderPlaced(1), try RuntimeFixture.orderPlaced(2)])
        let messages = try await fixture.read(Topic.orders.name, count: 2)
        let handler = FlakyHandler(failures: 2)
        let processor = BatchProcessor(handler: handler, group: "flaky", source: "test-service",
                                       retry: RetryPolicy(attempts: 3, initialBackoff: .seconds(3)), logger: fixture.logger)
        let processing = Task { try await processor.process(messages, in: database) }

        try await waitUntil(.seconds(30), "the handler's first failure") { handler.failed >= 1 }
        var configuration = Configuration()
        configuration.busyMode = .timeout(1)
        let other = try DatabaseQueue(path: fixture.databasePath, configuration: configuration)
        try await other.write { db in
            try db.execute(sql: "CREATE TABLE note (text TEXT NOT NULL); INSERT INTO note VALUES ('written during the backoff')")
        }
        #expect(handler.failed == 1, "the note was written while the handler still waited to be retried")

        let outcome = try await within(.seconds(30), "the retries") { try await processing.value }
        #expect(outcome.applied == 2 && outcome.deadLettered == 0)
        #expect(handler.failed == 2)
        #expect(try await fixture.effectCounts(in: database) == ["order-1": 1, "order-2": 1])
        #expect(try await database.read { db in try Int.fetchOne(db, sql: "SELECT sum(nextOffset) FROM consumerOffset") } == 2)
    }
}

/// Counts each order's effect, failing the first `failures` times it is called.
final class FlakyHandler: EventHandler {
    let handledTypes: Set<EventType> = [.orderPlaced]
    private let state: Mutex<(left: Int, failed: Int)>

    init(failures: Int) { state = Mutex((failures, 0)) }

    var failed: Int { state.withLock { $0.failed } }

    func handle(_ envelope: Envelope, in db: Database) throws -> [DomainEvent] {
        guard case .orderPlaced(let order) = envelope.event else { return [] }
        let fails = state.withLock { state in
            guard state.left > 0 else { return false }
            state.left -= 1
            state.failed += 1
            return true
        }
        if fails { throw ConfirmingHandler.HandlerFailure() }
        try db.execute(sql: "INSERT INTO effect (orderId, count) VALUES (?, 1)", arguments: [order.orderId])
        return []
    }
}

