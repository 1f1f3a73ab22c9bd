import DomainEvents
import Foundation
import GRDB
import Kafka
import ServiceRuntime
import Testing

@Suite(.serialized) struct LogRebuildTests {
    /// An event on `orders` as `source` wrote it: order `n` of customer `customer`, that customer's `sequence`th.
    static func written(by source: String, order n: Int, customer: String, sequence: Int64) throws -> OutgoingMessage {
        let event = DomainEvent.orderPlaced(OrderPlaced(
            orderId: "order-\(n)", customerId: customer,
            lines: [OrderLine(productId: "product-1", quantity: 1, unitPriceCents: 500)], totalCents: 500, currency: "EUR"))
        let envelope = Envelope(eventId: UUID().uuidString.lowercased(), key: customer, sequence: sequence, correlationId: "order-\(n)",
                                causationId: nil, occurredAt: Timestamp.now(), source: source, event: event)
        return try Wire.message(for: envelope, traceparent: nil)
    }

    @Test func theServiceGetsBackItsOwnEventsItsSequencesAndPositionsAtTheStartOfWhatItConsumes() async throws {
        let fixture = try RuntimeFixture()
        var onOrders: [OutgoingMessage] = []
        for n in 0..<9 {
            onOrders.append(try Self.written(by: "test-service", order: n, customer: "customer-\(n % 3)", sequence: Int64(n / 3 + 1)))
        }
        onOrders.append(try Self.written(by: "another-service", order: 100, customer: "customer-0", sequence: 40))
        onOrders.append(OutgoingMessage(topic: Topic.orders.name, key: "customer-1", value: Array("not an event".utf8)))
        try await fixture.produce(onOrders)
        try await fixture.produce(try (0..<30).map { n in
            var message = try RuntimeFixture.orderPlaced(n)
            message.topic = Topic.payments.name
            return message
        })

        let database = try fixture.openDatabase()
        let settings = RuntimeSettings(
            service: "test-service", varDirectory: fixture.directory.path, databasePath: fixture.databasePath, group: "test-group",
            instanceID: "test-1", port: 0, logLevel: .warning, kafka: fixture.configuration)
        let summary = try await within(.seconds(90), "the rebuild") {
            try await LogRebuild(settings: settings).run(writes: .orders, consumes: [.payments], into: database) { envelope, db in
                try db.execute(sql: "INSERT INTO effect (orderId, count) VALUES (?, 1)", arguments: [envelope.correlationId])
            }
        }

        #expect(summary.ownEvents == 9)
        #expect(summary.otherMessages == 2)
        #expect(summary.keys == 3)
        #expect(summary.partitionsRewound == 3)
        #expect(summary.partitionsMissingHistory.isEmpty)
        #expect(try await fixture.effectCounts(in: database) == Dictionary(uniqueKeysWithValues: (0..<9).map { ("order-\($0)", 1) }))
        let (sequences, positions) = try await database.write { db in
            // What the next event for each customer gets: after its last on the log, not after another writer's.
            let next = try ["customer-0", "customer-1", "customer-2", "customer-9"].map { key in
                try Outbox.append([.orderConfirmed(OrderConfirmed(orderId: "order-x", customerId: key, totalCents: 1))],
                                  cause: EventCause(eventId: nil, trace: .newTrace()), source: "test-service", in: db)[0].sequence
            }
            return (next, try Inbox.nextOffsets(group: "test-group", in: db))
        }
        #expect(sequences == [4, 4, 4, 1])
        #expect(positions == Dictionary(uniqueKeysWithValues: (0..<3).map { (TopicPartition(Topic.payments.name, Int32($0)), Int64(0)) }))
    }

    /// The log may hold copies of an event (a relay re-sends what it sent before a crash), and a rebuild may be
    /// cut short: a copy is applied once, and a second run finishes what the first began.
    @Test func aCopyIsAppliedOnceAndARebuildCutShortIsFinishedByTheNextRun() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        var onOrders: [OutgoingMessage] = []
        for n in 0..<6 {
            onOrders.append(try Self.written(by: "test-service", order: n, customer: "customer-\(n % 2)", sequence: Int64(n / 2 + 1)))
        }
        onOrders.insert(onOrders[1], at: 3)
        try await fixture.produce(onOrders)
        let database = try fixture.openDatabase()
        let settings = RuntimeSettings(
            service: "test-service", varDirectory: fixture.directory.path, databasePath: fixture.databasePath, group: "test-group",
            instanceID: "test-1", port: 0, logLevel: .warning, kafka: fixture.configuration)
        struct PowerCut: Error {}
        // A plain INSERT, as order-service's OrderPlaced is: a second application fails on the order's key.
        let cut = try await within(.seconds(90), "the first rebuild") {
            do {
                _ = try await LogRebuild(settings: settings).run(writes: .orders, consumes: [.payments], into: database) { envelope, db in
                    if envelope.correlationId == "order-4" { throw PowerCut() }
                    try db.execute(sql: "INSERT INTO effect (orderId, count) VALUES (?, 1)", arguments: [envelope.correlationId])
                }
                return false
            } catch is PowerCut { return true }
        }
        #expect(cut)
        #expect(try await database.read(LogRebuild.wasInterrupted))
        let summary = try await within(.seconds(90), "the second rebuild") {
            try await LogRebuild(settings: settings).run(writes: .orders, consumes: [.payments], into: database) { envelope, db in
                try db.execute(sql: "INSERT INTO effect (orderId, count) VALUES (?, 1)", arguments: [envelope.correlationId])
            }
        }
        #expect(try await fixture.effectCounts(in: database) == Dictionary(uniqueKeysWithValues: (0..<6).map { ("order-\($0)", 1) }))
        #expect(summary.copies >= 1, "the copy of order-1 was not counted")
        #expect(summary.ownEvents + summary.copies == 7)
        #expect(try await !database.read(LogRebuild.wasInterrupted))
        #expect(try await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM rebuiltEvent") } == 0)
    }
}
