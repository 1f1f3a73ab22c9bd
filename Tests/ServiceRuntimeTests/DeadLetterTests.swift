import DomainEvents
import Foundation
import GRDB
import Kafka
import ServiceRuntime
import Synchronization
import Testing

@Suite(.serialized) struct DeadLetterTests {
    @Test func eachKindOfPoisonLandsInTheDeadLetterTopicWithItsReasonAndTheNextMessageIsProcessed() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        let valid = try RuntimeFixture.orderPlaced(1)
        func poison(value: [UInt8] = valid.value, headers: [KafkaHeader] = valid.headers, key: String = "customer-1") -> OutgoingMessage {
            OutgoingMessage(topic: Topic.orders.name, key: Array(key.utf8), value: value, headers: headers)
        }
        let typeHeader = { (type: String) in [KafkaHeader("event-type", type), KafkaHeader("event-version", "1")] }
        let failing = try { () throws -> OutgoingMessage in
            let event = DomainEvent.orderPlaced(OrderPlaced(
                orderId: "order-x", customerId: ConfirmingHandler.failingCustomer,
                lines: [OrderLine(productId: "product-1", quantity: 1, unitPriceCents: 500)], totalCents: 500, currency: "EUR"))
            let envelope = Envelope(eventId: UUID().uuidString.lowercased(), key: ConfirmingHandler.failingCustomer, sequence: 1,
                                    correlationId: "order-x", causationId: nil, occurredAt: Timestamp.now(), source: "test", event: event)
            return try Wire.message(for: envelope, traceparent: nil)
        }()
        let cases: [(OutgoingMessage, String)] = [
            (poison(value: Array("{not json".utf8)), "not valid JSON"),
            (poison(headers: typeHeader("OrderTeleported")), "unknown event type 'OrderTeleported'"),
            (poison(headers: [KafkaHeader("event-type", "OrderPlaced"), KafkaHeader("event-version", "7")]), "unsupported version '7'"),
            (poison(headers: []), "the event-type header is missing"),
            (poison(value: Array(repeating: UInt8(ascii: "x"), count: 300 * 1024)), "over the 262144-byte limit"),
            (poison(key: "someone-else"), "differs from the message key"),
            (failing, "the handler failed 3 times"),
        ]
        var stream: [OutgoingMessage] = []
        for (index, (message, _)) in cases.enumerated() {
            stream.append(message)
            stream.append(try RuntimeFixture.orderPlaced(100 + index, customers: 1))
        }
        try await fixture.produce(stream)

        let incoming = try await fixture.read(Topic.orders.name, count: stream.count)
        let outcome = try await fixture.processor(group: "dlq-test").process(incoming, in: database)
        #expect(outcome.deadLettered == cases.count)
        #expect(outcome.applied == cases.count, "a message after a poison one was not processed")
        #expect(try await fixture.effectCounts(in: database).count == cases.count)

        let relay = RunningRelay(database: database, path: fixture.databasePath, configuration: fixture.configuration)
        relay.relay.wake()
        try await waitUntil(.seconds(30), "the outbox drains") { try await database.read(Outbox.pendingCount) == 0 }
        try await relay.stop()

        let deadLetters = try await fixture.read(Topic.orders.deadLetterName, count: cases.count)
        #expect(deadLetters.count == cases.count)
        for (index, (deadLetter, (original, reason))) in zip(deadLetters, cases).enumerated() {
            #expect(deadLetter.header("dlq-reason")?.contains(reason) == true, "reason was \(deadLetter.header("dlq-reason") ?? "none")")
            #expect(deadLetter.key.map(Array.init) == original.key.map(Array.init))
            #expect(Array(deadLetter.value) == Array(original.value))
            #expect(deadLetter.header("dlq-group") == "dlq-test")
            #expect(deadLetter.header("dlq-source-topic") == "orders")
            #expect(deadLetter.header("dlq-source-partition") == "0")
            // One partition, each poison message followed by a valid one: case i sits at offset 2i.
            #expect(deadLetter.header("dlq-source-offset") == String(2 * index))
            #expect(Timestamp.isValid(deadLetter.header("dlq-failed-at") ?? ""))
            for header in original.headers { #expect(deadLetter.headers.contains(header)) }
            #expect(DeadLetter.original(of: deadLetter) == original)
        }
    }

    @Test func aKnownTypeTheServiceDoesNotReactToIsSkippedWithoutADeadLetter() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        let cancelled = DomainEvent.orderCancelled(OrderCancelled(orderId: "o", customerId: "c", reason: .outOfStock, detail: "none left"))
        let envelope = Envelope(eventId: UUID().uuidString.lowercased(), key: "c", sequence: 1, correlationId: "o",
                                causationId: nil, occurredAt: Timestamp.now(), source: "test", event: cancelled)
        let message = try Wire.message(for: envelope, traceparent: nil)
        let consumed = ConsumedMessage(topic: "orders", partition: 0, offset: 0, key: message.key, value: message.value, headers: message.headers)
        let outcome = try await fixture.processor().process([consumed], in: database)
        #expect(outcome.skipped == 1 && outcome.deadLettered == 0)
        #expect(try await database.read(Outbox.pendingCount) == 0)
    }
}

/// Fails the first two tries of every order, then applies it: a flaky dependency that heals within the retries.
final class TwiceFailingHandler: EventHandler {
    let handledTypes: Set<EventType> = [.orderPlaced]
    let tries = Mutex<[String: Int]>([:])

    func handle(_ envelope: Envelope, in db: Database) throws -> [DomainEvent] {
        guard case .orderPlaced(let order) = envelope.event else { return [] }
        let tried = tries.withLock { tries in
            tries[order.orderId, default: 0] += 1
            return tries[order.orderId]!
        }
        if tried <= 2 { throw ConfirmingHandler.HandlerFailure() }
        return []
    }
}

@Suite struct RetryCountTests {
    /// Each failing message gets its own three tries: a count carried over from an earlier message of the
    /// batch dead-lettered the second one after two.
    @Test func everyFailingMessageOfABatchGetsAllItsTries() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        let handler = TwiceFailingHandler()
        let processor = BatchProcessor(handler: handler, group: "retry-test", source: "test-service",
                                       retry: RetryPolicy(attempts: 3, initialBackoff: .milliseconds(1)), logger: fixture.logger)
        let messages = try (0..<3).map { n in
            let message = try RuntimeFixture.orderPlaced(n, customers: 1)
            return ConsumedMessage(topic: "orders", partition: 0, offset: Int64(n), key: message.key, value: message.value, headers: message.headers)
        }
        let outcome = try await processor.process(messages, in: database)
        #expect(outcome.deadLettered == 0, "a message was dead-lettered before its third try")
        #expect(outcome.applied == 3)
        #expect(handler.tries.withLock { $0 } == ["order-0": 3, "order-1": 3, "order-2": 3])

        let inTransaction = try await database.write { db in
            try db.execute(sql: "DELETE FROM processedEvent")
            return try BatchProcessor(handler: TwiceFailingHandler(), group: "retry-test-2", source: "test-service", logger: fixture.logger)
                .process(messages, in: db)
        }
        #expect(inTransaction.deadLettered == 0 && inTransaction.applied == 3)
    }
}
