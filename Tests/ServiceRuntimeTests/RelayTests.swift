import DomainEvents
import Foundation
import GRDB
import Kafka
@_spi(Testing) import ServiceRuntime
import Testing

@Suite(.serialized) struct RelayTests {
    private func appendOrders(_ range: Range<Int>, to database: DatabasePool) async throws {
        try await database.write { db in
            for n in range {
                let event = DomainEvent.orderConfirmed(OrderConfirmed(orderId: "order-\(n)", customerId: "customer-\(n % 7)", totalCents: n))
                try Outbox.append([event], cause: .request(traceparent: nil), source: "test-service", in: db)
            }
        }
    }

    private func expectPerKeyOrder(_ messages: [ConsumedMessage]) throws {
        var last: [String: Int64] = [:]
        for message in messages {
            let envelope = try Wire.decode(message)
            #expect(envelope.sequence == last[envelope.key, default: 0] + 1, "\(envelope.key) out of order")
            last[envelope.key] = envelope.sequence
        }
    }

    @Test func rowsWaitWhileKafkaIsUnreachableAndAllArriveInPerKeyOrderWhenItReturns() async throws {
        let fixture = try RuntimeFixture()
        let database = try fixture.openDatabase()
        try fixture.cluster.setAllBrokersDown()
        let running = RunningRelay(database: database, path: fixture.databasePath, configuration: fixture.configuration)
        for start in stride(from: 0, to: 300, by: 50) {
            try await appendOrders(start..<start + 50, to: database)
            running.relay.wake()
        }
        // The relay has had every chance to publish; with the brokers down nothing can be delivered.
        try await Task.sleep(for: .seconds(1))
        #expect(running.relay.deliveredCount == 0)
        #expect(try await database.read(Outbox.pendingCount) == 300)

        try fixture.cluster.setAllBrokersUp()
        try await waitUntil(.seconds(60), "the outbox drains") { try await database.read(Outbox.pendingCount) == 0 }
        try await running.stop()

        let published = try await fixture.read(Topic.orders.name, count: 300)
        #expect(published.count == 300)
        #expect(Set(published.compactMap { $0.header(Wire.Header.eventId) }).count == 300)
        try expectPerKeyOrder(published)
    }

    /// A broker that is away holds back only the rows for the partitions it leads: the relay publishes the rest
    /// meanwhile, and the held rows follow when it returns, each key's events in order, each event once.
    @Test func aBrokerAwayHoldsBackOnlyTheRowsForThePartitionsItLeads() async throws {
        let fixture = try RuntimeFixture(partitions: 3)
        for partition: Int32 in 0..<3 { try fixture.cluster.setLeader(of: Topic.orders.name, partition: partition, to: partition + 1) }
        try fixture.cluster.setBrokerDown(2)
        let database = try fixture.openDatabase()
        let running = RunningRelay(database: database, path: fixture.databasePath, configuration: fixture.configuration)
        // The events are keyed by customer (seven of them); broker 2 leads partition 1.
        let onBroker2 = { (n: Int) in Murmur2.partition(for: "customer-\(n % 7)", partitionCount: 3) == 1 }
        let held = (0..<300).filter(onBroker2).count
        try #require(held > 0 && held < 300, "the keys do not spread over the partitions")
        for start in stride(from: 0, to: 300, by: 50) {
            try await appendOrders(start..<start + 50, to: database)
            running.relay.wake()
        }

        try await waitUntil(.seconds(30), "the rows for partitions 0 and 2 are published") {
            running.relay.deliveredCount == 300 - held
        }
        let waiting = try await database.read { db in try OutboxRow.fetchAll(db) }
        #expect(waiting.count == held)
        #expect(waiting.allSatisfy { Murmur2.partition(for: $0.key.map { Array($0) } ?? [], partitionCount: 3) == 1 })

        try fixture.cluster.setBrokerUp(2)
        try await waitUntil(.seconds(60), "the held rows are published") { try await database.read(Outbox.pendingCount) == 0 }
        try await running.stop()
        #expect(running.relay.deliveredCount == 300)
        let published = try await fixture.read(Topic.orders.name, count: 300)
        #expect(published.count == 300)
        #expect(Set(published.compactMap { $0.header(Wire.Header.eventId) }).count == 300)
        try expectPerKeyOrder(published)
    }

    /// A partition without a leader for longer than it takes to fill the relay's whole in-flight window: its
    /// rows wait, lane by lane, and every other partition's rows keep flowing; when the leader returns, the held
    /// rows follow, each key in order, each event once.
    @Test func aLongPartitionOutageHoldsOnlyItsOwnLanesWhateverTheirBacklog() async throws {
        let fixture = try RuntimeFixture(partitions: 3)
        for partition: Int32 in 0..<3 { try fixture.cluster.setLeader(of: Topic.orders.name, partition: partition, to: partition + 1) }
        try fixture.cluster.setBrokerDown(2)
        let database = try fixture.openDatabase()
        // Twenty rows a batch: at most 200 in flight, 12 per lane.
        let running = RunningRelay(database: database, path: fixture.databasePath, configuration: fixture.configuration, batchSize: 20)
        let customer: @Sendable (Int) -> String = { n in "customer-\(n % 40)" }
        let held = (0..<1_000).filter { Murmur2.partition(for: customer($0), partitionCount: 3) == 1 }.count
        try #require(held > 200, "the outage must hold more rows than the relay's whole window: \(held)")
        for start in stride(from: 0, to: 1_000, by: 100) {
            try await database.write { db in
                for n in start..<start + 100 {
                    let event = DomainEvent.orderConfirmed(OrderConfirmed(orderId: "order-\(n)", customerId: customer(n), totalCents: n))
                    try Outbox.append([event], cause: .request(traceparent: nil), source: "test-service", in: db)
                }
            }
            running.relay.wake()
        }
        try await waitUntil(.seconds(60), "every row for partitions 0 and 2 published") { running.relay.deliveredCount == 1_000 - held }
        try fixture.cluster.setBrokerUp(2)
        try await waitUntil(.seconds(60), "the held rows published") { try await database.read(Outbox.pendingCount) == 0 }
        try await running.stop()
        let published = try await fixture.read(Topic.orders.name, count: 1_000)
        #expect(published.count == 1_000)
        #expect(Set(published.compactMap { $0.header(Wire.Header.eventId) }).count == 1_000)
        try expectPerKeyOrder(published)
    }

    @Test func onlyOneOfTwoInstancesSharingADatabaseRelaysAndTheOtherTakesOver() async throws {
        let fixture = try RuntimeFixture()
        let first = RunningRelay(database: try fixture.openDatabase(), path: fixture.databasePath, configuration: fixture.configuration)
        let database = try fixture.openDatabase()
        let second = RunningRelay(database: database, path: fixture.databasePath, configuration: fixture.configuration)

        try await appendOrders(0..<100, to: database)
        first.relay.wake()
        second.relay.wake()
        try await waitUntil(.seconds(30), "the outbox drains") { try await database.read(Outbox.pendingCount) == 0 }
        let delivered = (first.relay.deliveredCount, second.relay.deliveredCount)
        #expect(delivered.0 + delivered.1 == 100)
        #expect(delivered.0 == 0 || delivered.1 == 0, "both instances relayed")

        let (leader, standby) = delivered.0 > 0 ? (first, second) : (second, first)
        try await leader.stop()
        let handedOver = ContinuousClock.now
        try await appendOrders(100..<200, to: database)
        try await waitUntil(.seconds(30), "the standby takes over") { try await database.read(Outbox.pendingCount) == 0 }
        // A generous ceiling, not a benchmark: the lease is retried every few hundred milliseconds, so a hand-over
        // that takes this long means the standby was not waiting for it at all.
        #expect(ContinuousClock.now - handedOver < .seconds(15), "the standby took too long to take over")
        #expect(standby.relay.deliveredCount == 100)
        try await standby.stop()

        let published = try await fixture.read(Topic.orders.name, count: 200)
        #expect(published.count == 200)
        #expect(Set(published.compactMap { $0.header(Wire.Header.eventId) }).count == 200, "an event was published twice")
        try expectPerKeyOrder(published)
    }

    /// A row Kafka can never take (here a dead-letter copy over the producer's 1 MB message limit) is parked with
    /// its reason; the rows behind it are published, in order, and nothing is sent twice.
    @Test func aRowKafkaRefusesForGoodIsParkedAndTheRowsBehindItArePublished() async throws {
        let fixture = try RuntimeFixture()
        let database = try fixture.openDatabase()
        try await appendOrders(0..<20, to: database)
        let huge = ConsumedMessage(topic: Topic.orders.name, partition: 0, offset: 7, key: Array("customer-1".utf8),
                                   value: Array(repeating: UInt8(ascii: "x"), count: 1_200_000), headers: [])
        try await database.write { db in
            try Outbox.append(DeadLetter.message(for: huge, reason: "too large to read", group: "test-group"), in: db)
        }
        try await appendOrders(20..<40, to: database)

        let running = RunningRelay(database: database, path: fixture.databasePath, configuration: fixture.configuration)
        running.relay.wake()
        try await waitUntil(.seconds(60), "the outbox drains") { try await database.read(Outbox.pendingCount) == 0 }
        try await running.stop()

        #expect(running.relay.deliveredCount == 40)
        let parked = try await database.read { db in try ParkedOutboxRow.fetchAll(db) }
        #expect(parked.count == 1)
        #expect(parked.first?.topic == Topic.orders.deadLetterName)
        #expect(parked.first?.reason.contains("MSG_SIZE_TOO_LARGE") == true, "\(parked.first?.reason ?? "")")
        let published = try await fixture.read(Topic.orders.name, count: 40)
        #expect(Set(published.compactMap { $0.header(Wire.Header.eventId) }).count == 40)
        try expectPerKeyOrder(published)
    }

    /// A producer that raises a fatal error (as an idempotent producer whose sequence broke does) takes no more
    /// messages: the relay closes it and publishes the rest through a new one, each event once, in per-key order.
    @Test func aProducerThatRaisesAFatalErrorIsReplacedAndTheRelayGoesOn() async throws {
        let fixture = try RuntimeFixture()
        let database = try fixture.openDatabase()
        let running = RunningRelay(database: database, path: fixture.databasePath, configuration: fixture.configuration)
        try await appendOrders(0..<50, to: database)
        running.relay.wake()
        try await waitUntil(.seconds(60), "the first rows are published") { try await database.read(Outbox.pendingCount) == 0 }
        #expect(running.relay.raiseFatalErrorInProducer(reason: "sequence broken on purpose"))

        try await appendOrders(50..<100, to: database)
        running.relay.wake()
        try await waitUntil(.seconds(60), "the rows after the fatal error are published") {
            try await database.read(Outbox.pendingCount) == 0
        }
        try await running.stop()

        #expect(running.relay.producersCreated == 2, "the producer was not replaced")
        #expect(running.relay.deliveredCount == 100)
        let published = try await fixture.read(Topic.orders.name, count: 100)
        #expect(Set(published.compactMap { $0.header(Wire.Header.eventId) }).count == 100)
        try expectPerKeyOrder(published)
    }
}
