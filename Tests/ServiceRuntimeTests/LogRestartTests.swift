import DomainEvents
import Foundation
import GRDB
import Kafka
import ServiceRuntime
import Testing

/// A log can get shorter than the positions a service stored: a topic recreated, a cluster restarted empty under
/// kept databases, a log truncated. What the log holds then is new and must be applied, not skipped as "already
/// applied"; what the service did apply before is recognised by its event ID.
@Suite(.serialized) struct LogRestartTests {
    @Test func aLogShorterThanTheStoredPositionIsReadFromItsStartAndCopiesAreSkippedByEventID() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        let partition = TopicPartition(Topic.orders.name, 0)
        let messages = try (0..<5).map { try RuntimeFixture.orderPlaced($0, customers: 1) }
        let appliedBefore = try #require(ConsumedMessage(topic: partition.topic, partition: 0, offset: 0, key: messages[0].key,
                                                         value: messages[0].value, headers: messages[0].headers).header(Wire.Header.eventId))
        // The database remembers a longer log: 500 messages read, one of today's events among those applied.
        try await database.write { db in
            try Inbox.save([partition: 500], group: "test-group", in: db)
            _ = try Inbox.record(appliedBefore, in: db)
        }
        try await fixture.produce(messages)

        let running = RunningLoop(fixture: fixture, database: database)
        try await waitUntil(.seconds(60), "the four new orders applied") { try await fixture.effectCounts(in: database).count == 4 }
        // The loop reads its own topic: past the 5 orders and the 4 confirmations it wrote.
        try await waitUntil(.seconds(60), "the position follows the log as it is now") {
            try await database.read { db in try Inbox.nextOffsets(group: "test-group", in: db)[partition] } == 9
        }
        try await running.stop()

        #expect(try await fixture.effectCounts(in: database) == Dictionary(uniqueKeysWithValues: (1..<5).map { ("order-\($0)", 1) }))
        #expect(running.loop.status.handled.logRestarts == 1)
        #expect(running.loop.status.handled.duplicates == 1, "the event applied before the log restarted was applied again")
    }

    /// The consumer tells which partition restarted and where, on the batch and as an event, once.
    @Test func theConsumerMarksTheBatchOfAPartitionWhoseLogEndsBelowItsStartingOffset() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        try await fixture.produce(try (0..<3).map { try RuntimeFixture.orderPlaced($0) })
        let partition = TopicPartition(Topic.orders.name, 0)
        let consumer = try KafkaConsumer(configuration: fixture.configuration, group: "restart-\(UUID())", topics: [partition.topic],
                                         startingOffsets: { _ in [partition: 40] })
        let (first, second) = try await within(.seconds(60), "the log read from its start") {
            var batches = consumer.batches.makeAsyncIterator()
            let first = try #require(try await batches.next())
            try await consumer.commit(first)
            try await fixture.produce([try RuntimeFixture.orderPlaced(3)])
            let second = try #require(try await batches.next())
            try await consumer.commit(second)
            return (first, second)
        }
        let event = try await within(.seconds(10), "the restart is reported") { () -> KafkaConsumerEvent? in
            for await event in consumer.events { if case .logRestarted = event { return event } }
            return nil
        }
        try await consumer.close(within: .seconds(30))
        #expect(first.messages.first?.offset == 0)
        #expect(first.logRestarts == [partition: 0])
        #expect(second.logRestarts.isEmpty, "a restart is handed over until a batch carrying it is committed, then no more")
        #expect(event == .logRestarted(partition, expected: 40, resumedAt: 0))
    }
}
