import Foundation
import DomainEvents
import GRDB
import Kafka
import ServiceRuntime
import Testing

@Suite(.serialized) struct ExactlyOnceTests {
    /// The process "dies" after its database commit and before its offset commit: the batch comes back.
    @Test func aBatchRedeliveredAfterItsDatabaseCommitHasNoSecondEffect() async throws {
        let fixture = try RuntimeFixture()
        let database = try fixture.openDatabase()
        let orders = try (0..<200).map { try RuntimeFixture.orderPlaced($0) }
        try await fixture.produce(orders)

        let processor = fixture.processor()
        let first = try KafkaConsumer(configuration: fixture.configuration, group: processor.group, topics: [Topic.orders.name])
        let appliedBeforeCrash = try await within(.seconds(60), "the first consumer applies everything") {
            var applied = 0
            for try await batch in first.batches {
                applied += try await processor.process(batch.messages, in: database).applied
                if applied >= 200 { break }
                try await first.commit(batch)
            }
            return applied
        }
        // Dies here: the last batch is applied in the database, its offsets never reach Kafka.
        try await first.close(within: .seconds(30))

        let restarted = try KafkaConsumer(configuration: fixture.configuration, group: processor.group, topics: [Topic.orders.name])
        let outcome = try await within(.seconds(60), "the redelivered batch") {
            var outcome = BatchOutcome()
            for try await batch in restarted.batches {
                outcome = outcome + (try await processor.process(batch.messages, in: database))
                try await restarted.commit(batch)
                if outcome.alreadyApplied > 0 { break }
            }
            return outcome
        }
        try await restarted.close(within: .seconds(30))

        #expect(appliedBeforeCrash == 200)
        #expect(outcome.applied == 0, "a redelivered event was applied again")
        #expect(outcome.alreadyApplied > 0, "the uncommitted batch was not redelivered")
        let counts = try await fixture.effectCounts(in: database)
        #expect(counts.count == 200 && counts.values.allSatisfy { $0 == 1 })
        #expect(try await database.read(Outbox.pendingCount) == 200, "each order caused exactly one outgoing event")
    }

    /// A writer that crashed after publishing may publish the same event again: the copy has no effect.
    @Test func aDuplicatedEventIsAppliedOnce() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        let original = try RuntimeFixture.orderPlaced(1, eventId: "0b5f2f3e-8c43-4a0e-9d6a-2f1f3b9b7c11")
        try await fixture.produce([original, try RuntimeFixture.orderPlaced(2), original])
        let messages = try await fixture.read(Topic.orders.name, count: 3)

        let outcome = try await fixture.processor().process(messages, in: database)
        #expect(outcome.applied == 2)
        #expect(outcome.duplicates == 1)
        #expect(try await fixture.effectCounts(in: database) == ["order-1": 1, "order-2": 1])
    }

    @Test func outgoingEventsCarryGaplessPerKeySequencesAndTheirCause() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        try await fixture.produce(try (0..<30).map { try RuntimeFixture.orderPlaced($0, customers: 3) })
        let incoming = try await fixture.read(Topic.orders.name, count: 30)
        _ = try await fixture.processor().process(incoming, in: database)

        let rows = try await database.read { db in try OutboxRow.order(Column("id")).fetchAll(db) }
        var lastSequence: [String: Int64] = [:]
        for row in rows {
            let message = row.message
            let consumed = ConsumedMessage(topic: message.topic, partition: 0, offset: 0, key: message.key, value: message.value, headers: message.headers)
            let envelope = try Wire.decode(consumed)
            #expect(envelope.sequence == lastSequence[envelope.key, default: 0] + 1)
            lastSequence[envelope.key] = envelope.sequence
            #expect(envelope.source == "test-service")
            let cause = try #require(incoming.first { $0.header(Wire.Header.eventId) == envelope.causationId })
            let causeTrace = try #require(cause.header(Wire.Header.traceparent).flatMap(TraceContext.init(traceparent:)))
            let trace = try #require(consumed.header(Wire.Header.traceparent).flatMap(TraceContext.init(traceparent:)))
            #expect(trace.traceId == causeTrace.traceId && trace.spanId != causeTrace.spanId)
        }
        #expect(lastSequence == ["customer-0": 10, "customer-1": 10, "customer-2": 10])
    }

    /// Each event's inbox row is written first in its savepoint: a handler that fails for good takes it back with
    /// everything else, so that a replay of the event, once its cause is fixed, is applied and not skipped.
    @Test func anEventWhoseHandlerFailsForGoodIsNotRecordedAsProcessed() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        let failing = try placed("order-x", customer: ConfirmingHandler.failingCustomer, sequence: 1, offset: 0)
        let fine = try placed("order-y", customer: "customer-1", sequence: 1, offset: 1)

        let outcome = try await database.write { db in try fixture.processor().process([failing, fine], in: db) }

        #expect(outcome.deadLettered == 1 && outcome.applied == 1)
        let recorded = try await database.read { db in try String.fetchAll(db, sql: "SELECT eventId FROM processedEvent") }
        #expect(recorded == [fine.header(Wire.Header.eventId)!])
    }

    /// A handler that fails in the middle of a batch, after writing, has its own writes undone and nothing else:
    /// the events before it and after it are applied once each, and only the failing one is dead-lettered.
    @Test func aHandlerFailingInTheMiddleOfABatchUndoesOnlyItsOwnWrites() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        let messages = try [
            placed("order-a", customer: "customer-1", sequence: 1, offset: 0),
            placed("order-b", customer: "customer-2", sequence: 1, offset: 1),
            placed("order-x", customer: ConfirmingHandler.failingCustomer, sequence: 1, offset: 2),
            placed("order-c", customer: "customer-1", sequence: 2, offset: 3),
        ]

        let outcome = try await database.write { db in try fixture.processor().process(messages, in: db) }

        #expect(outcome.applied == 3 && outcome.deadLettered == 1 && outcome.emitted == 3)
        let effects = try await database.read { db in try Row.fetchAll(db, sql: "SELECT orderId, count FROM effect ORDER BY orderId") }
        #expect(effects.map { "\($0["orderId"] as String)=\($0["count"] as Int)" } == ["order-a=1", "order-b=1", "order-c=1"])
        let outbox = try await database.read { db in try String.fetchAll(db, sql: "SELECT topic FROM outbox ORDER BY id") }
        #expect(outbox == ["orders", "orders", "orders.dlq", "orders"])
        let next = try await database.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(nextOffset) FROM consumerOffset") }
        #expect(next == 4)
    }

    /// A consumer may skip types it does not react to, so a key's sequence must rise, not by one; a sequence that
    /// does not rise is applied and recorded as an anomaly with what came before.
    @Test func aKeysSequenceThatDoesNotRiseIsRecordedAsAnAnomaly() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        let messages = try [3, 5, 4, 5, 6].enumerated().map { offset, sequence in
            try placed("order-\(offset)", customer: "customer-1", sequence: sequence, offset: Int64(offset))
        }

        let outcome = try await database.write { db in try fixture.processor().process(messages, in: db) }

        #expect(outcome.applied == 5)
        let anomalies = try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT previous, received FROM sequenceAnomaly ORDER BY id").map { [$0["previous"], $0["received"]] as [Int64] }
        }
        #expect(anomalies == [[5, 4], [5, 5]])
        let last = try await database.read { db in try Int64.fetchOne(db, sql: "SELECT last FROM consumedSequence WHERE key = 'customer-1'") }
        #expect(last == 6)
    }

    /// An `OrderPlaced` as a consumer reads it, with a fresh event ID.
    private func placed(_ orderId: String, customer: String, sequence: Int, offset: Int64) throws -> ConsumedMessage {
        let event = DomainEvent.orderPlaced(OrderPlaced(
            orderId: orderId, customerId: customer,
            lines: [OrderLine(productId: "product-1", quantity: 1, unitPriceCents: 500)], totalCents: 500, currency: "EUR"))
        let envelope = Envelope(eventId: UUID().uuidString.lowercased(), key: customer, sequence: Int64(sequence), correlationId: orderId,
                                causationId: nil, occurredAt: Timestamp.now(), source: "test", event: event)
        let message = try Wire.message(for: envelope, traceparent: nil)
        return ConsumedMessage(topic: message.topic, partition: 0, offset: offset, key: message.key, value: message.value, headers: message.headers)
    }
}
