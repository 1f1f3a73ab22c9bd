import Foundation
@_spi(Testing) import Kafka
import Synchronization
import Testing

@Suite(.serialized) struct ProducerConsumerTests {
    @Test func keyedMessagesRoundTripInPerKeyOrderOnTheirMurmur2Partition() async throws {
        let cluster = try TestCluster(partitions: 6)
        let producer = try KafkaProducer(configuration: cluster.configuration)
        let sent = cluster.messages(count: 3_000, keys: 40)
        let reports = try await within(.seconds(60), "3,000 deliveries") { await producer.send(sent) }
        for report in reports { _ = try report.get() }
        try await producer.close(within: .seconds(30))

        let consumer = try KafkaConsumer(configuration: cluster.configuration, group: "round-trip", topics: [cluster.topic])
        let ledger = Ledger()
        try await within(.seconds(60), "consume 3,000 messages") {
            try await consume(consumer, into: ledger) { ledger.count >= sent.count }
        }
        try await consumer.close(within: .seconds(30))

        let received = ledger.messages
        #expect(received.count == sent.count)
        var lastIndexByKey: [String: Int] = [:]
        for message in received {
            let key = try #require(message.keyString)
            let index = try #require(Int(String(decoding: message.value, as: UTF8.self)))
            #expect(message.partition == Murmur2.partition(for: key, partitionCount: cluster.partitions))
            #expect(message.header("event-type") == "Test")
            #expect(message.header("index") == "\(index)")
            #expect(message.header("a-header-name-of-more-than-sixteen-bytes") == "long")
            #expect(index > lastIndexByKey[key, default: -1], "key \(key) went backwards")
            lastIndexByKey[key] = index
        }
        // Delivery reports name the same partition the consumer found each message in.
        for (index, report) in reports.enumerated() {
            let key = "key-\(index % 40)"
            #expect(try report.get().partition == Murmur2.partition(for: key, partitionCount: cluster.partitions))
        }
    }

    /// A member whose session ends because its coordinator is away has lost its partitions: another member may
    /// own them already, and a commit has nowhere to go. It lets them go at once. It used to commit them first,
    /// as on an ordinary revocation, which failed after waiting for the coordinator and held the revocation, and
    /// the poll thread, meanwhile (4 s in a service's log under the broker chaos test).
    @Test func aMemberThatLostItsCoordinatorLetsItsPartitionsGoWithoutCommitting() async throws {
        let cluster = try TestCluster(partitions: 2)
        // The data on broker 1, the group's coordinator on broker 2: only the coordinator goes away.
        for partition in 0..<cluster.partitions { try cluster.cluster.setLeader(of: cluster.topic, partition: partition, to: 1) }
        try cluster.cluster.setCoordinator(ofGroup: "lost", to: 2)
        let member = try await MemberWithCommittedOffsets(cluster, group: "lost")
        defer { member.watcher.cancel() }

        try cluster.cluster.setBrokerDown(2)
        let wentDown = ContinuousClock.now
        try await waitUntil(.seconds(60), "the member lets its partitions go") { member.events.revocations > 0 }
        print("the member let its partitions go \(ContinuousClock.now - wentDown) after its coordinator went away")
        #expect(member.events.commitErrors.isEmpty, "it tried to commit partitions it had lost: \(member.events.commitErrors)")
        try cluster.cluster.setBrokerUp(2)
        try await member.consumer.close(within: .seconds(30))
        _ = try await member.consuming.value
    }

    /// Closing revokes the assignment, and the revocation commits what was processed. With the whole cluster
    /// gone, librdkafka's synchronous commit waited for ever: a service SIGTERMed just after its cluster was
    /// killed never exited. The commit on revocation now waits 5 s at most, and leaving the group 10 s.
    @Test func aMemberClosesWhenTheClusterIsGoneWithOffsetsStillToCommit() async throws {
        let cluster = try TestCluster(partitions: 2)
        let member = try await MemberWithCommittedOffsets(cluster, group: "orphaned")
        defer { member.watcher.cancel() }

        try cluster.cluster.setAllBrokersDown()
        let wentDown = ContinuousClock.now
        try await member.consumer.close(within: .seconds(30))
        print("the member closed \(ContinuousClock.now - wentDown) after the cluster went away")
        _ = try await member.consuming.value
        #expect(member.ledger.count == 20)
    }

    @Test func aRestartedConsumerResumesFromItsCommittedOffset() async throws {
        let cluster = try TestCluster(partitions: 3)
        let producer = try KafkaProducer(configuration: cluster.configuration)
        try await producer.deliver(cluster.messages(count: 600, keys: 10))

        let first = try KafkaConsumer(
            configuration: cluster.configuration, group: "restart", topics: [cluster.topic],
            batching: ConsumerBatching(maxMessages: 50))
        let before = Ledger()
        try await within(.seconds(60), "first consumer reads 200") {
            try await consume(first, into: before) { before.count >= 200 }
        }
        try await first.close(within: .seconds(30))

        try await producer.deliver(cluster.messages(count: 100, keys: 10))
        try await producer.close(within: .seconds(30))

        let second = try KafkaConsumer(configuration: cluster.configuration, group: "restart", topics: [cluster.topic])
        let after = Ledger()
        let expected = 700 - before.count
        try await within(.seconds(60), "second consumer reads the rest") {
            try await consume(second, into: after) { after.count >= expected }
        }
        try await second.close(within: .seconds(30))

        let positions = (before.messages + after.messages).map { "\($0.partition):\($0.offset)" }
        #expect(after.count == expected, "the restarted consumer read again what was committed, or skipped some")
        #expect(Set(positions).count == 700)
    }

    @Test func aSecondMemberJoiningMidStreamSplitsThePartitionsWithoutRedeliveryOrSkip() async throws {
        let cluster = try TestCluster(partitions: 6)
        let producer = try KafkaProducer(configuration: cluster.configuration)
        let messages = cluster.messages(count: 4_000, keys: 100)
        try await producer.deliver(Array(messages[..<2_000]))

        let ledger = Ledger()
        let batching = ConsumerBatching(maxMessages: 20)
        let first = try KafkaConsumer(configuration: cluster.configuration, group: "split", topics: [cluster.topic], batching: batching)
        let firstRun = Task { try await consume(first, into: ledger) { false } }
        try await waitUntil(.seconds(30), "the first member drains the first half") { ledger.count >= 2_000 }

        let second = try KafkaConsumer(configuration: cluster.configuration, group: "split", topics: [cluster.topic], batching: batching)
        let secondRun = Task { try await consume(second, into: ledger) { false } }
        // Wait for a settled assignment, read once per check: mid-rebalance, an eager member may hold nothing
        // or its old partitions, so a sum read at any moment could be neither before nor after.
        var assigned: ([TopicPartition], [TopicPartition]) = ([], [])
        try await waitUntil(.seconds(30), "the group rebalances over both members") {
            assigned = (first.assignment(), second.assignment())
            return !assigned.0.isEmpty && !assigned.1.isEmpty && assigned.0.count + assigned.1.count == 6
        }
        #expect(Set(assigned.0).isDisjoint(with: assigned.1))

        try await producer.deliver(Array(messages[2_000...]))
        try await producer.close(within: .seconds(30))
        try await waitUntil(.seconds(30), "both members drain the second half") { ledger.count >= 4_000 }
        try await first.close(within: .seconds(30))
        try await second.close(within: .seconds(30))
        let counts = (try await firstRun.value, try await secondRun.value)

        #expect(counts.0 > 2_000 && counts.1 > 0, "both members processed messages after the rebalance")
        let positions = ledger.messages.map { "\($0.partition):\($0.offset)" }
        #expect(positions.count == 4_000, "a message was delivered again")
        #expect(Set(positions).count == 4_000, "a message was skipped or delivered twice")
    }

    @Test func anOffsetThatFellOffTheLogRaisesATypedEvent() async throws {
        let cluster = try TestCluster(partitions: 1)
        let producer = try KafkaProducer(configuration: cluster.configuration)
        try await producer.deliver(cluster.messages(count: 20, keys: 2))
        let first = try KafkaConsumer(configuration: cluster.configuration, group: "laggard", topics: [cluster.topic],
                                      batching: ConsumerBatching(maxMessages: 5))
        let ledger = Ledger()
        try await within(.seconds(60), "the group commits a few") { try await consume(first, into: ledger) { ledger.count >= 5 } }
        try await first.close(within: .seconds(30))

        // The embedded cluster keeps 5 MB per partition: 7 MB of incompressible values push the committed offset out.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let filler = (0..<700).map { index in
            // xorshift64: incompressible for lz4, the same every run.
            let value = (0..<1_250).flatMap { _ -> [UInt8] in
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                return withUnsafeBytes(of: state) { Array($0) }
            }
            return OutgoingMessage(topic: cluster.topic, key: "filler-\(index)", value: value)
        }
        for chunk in stride(from: 0, to: filler.count, by: 50) {
            try await producer.deliver(Array(filler[chunk..<chunk + 50]))
        }
        try await producer.close(within: .seconds(30))
        let low = try await KafkaAdmin(configuration: cluster.configuration).offsets(of: [cluster.topic])[0].low
        #expect(low > 5, "the log still starts at \(low)")

        let second = try KafkaConsumer(configuration: cluster.configuration, group: "laggard", topics: [cluster.topic])
        let event = try await within(.seconds(60), "the loss is reported") { () -> KafkaConsumerEvent? in
            let reading = Task { try await consume(second, into: Ledger()) { false } }
            defer { reading.cancel() }
            for await event in second.events {
                if case .offsetFellOffLog = event { return event }
            }
            return nil
        }
        try await second.close(within: .seconds(30))
        guard case .offsetFellOffLog(let partition, let expected, let resumedAt) = event else {
            Issue.record("no offsetFellOffLog event")
            return
        }
        #expect(partition == TopicPartition(cluster.topic, 0))
        #expect(expected == 5)
        #expect(resumedAt >= low)
    }

    /// Offsets still in the log that a consumer jumps over are an error of ours, not a loss Kafka announced, and
    /// must be told apart from `offsetFellOffLog`: the one test above covers the loss, this one the skip.
    @Test func offsetsSkippedWhileStillInTheLogRaiseAGapEvent() async throws {
        let cluster = try TestCluster(partitions: 1)
        let producer = try KafkaProducer(configuration: cluster.configuration)
        try await producer.deliver(cluster.messages(count: 20, keys: 2))
        try await producer.close(within: .seconds(30))
        let partition = TopicPartition(cluster.topic, 0)
        let consumer = try KafkaConsumer(configuration: cluster.configuration, group: "skipper", topics: [cluster.topic],
                                         batching: ConsumerBatching(maxMessages: 5))
        let ledger = Ledger()
        let (expected, resumedAt) = try await within(.seconds(60), "a first batch, a skip, and the rest of the log") {
            var batches = consumer.batches.makeAsyncIterator()
            let first = try #require(try await batches.next())
            ledger.record(first.messages)
            // With the first batch in hand the consumer expects the offset after it; move it 7 further on.
            let expected = try #require(first.messages.last).offset + 1
            try consumer.seekWithoutTelling(partition, to: expected + 7)
            try await consumer.commit(first)
            while try #require(ledger.messages.last).offset < 19, let batch = try await batches.next() {
                ledger.record(batch.messages)
                try await consumer.commit(batch)
            }
            return (expected, expected + 7)
        }
        let event = try await within(.seconds(10), "the skip is reported") { () -> KafkaConsumerEvent? in
            for await event in consumer.events {
                if case .offsetGap = event { return event }
                if case .offsetFellOffLog = event { return event }
            }
            return nil
        }
        try await consumer.close(within: .seconds(30))

        #expect(ledger.messages.map(\.offset) == Array(0..<expected) + Array(resumedAt..<20))
        #expect(try await KafkaAdmin(configuration: cluster.configuration).offsets(of: [cluster.topic])[0].low == 0)
        #expect(event == .offsetGap(partition, expected: expected, resumedAt: resumedAt))
    }

    @Test func aFullLocalQueueMakesTheSenderWaitAndDropsNothing() async throws {
        // Room for 10 messages in librdkafka's queue, 2,000 to send: the sender must wait for room again and again.
        let cluster = try TestCluster(partitions: 3, extra: ["producer.queue.buffering.max.messages": "10"])
        let producer = try KafkaProducer(configuration: cluster.configuration)
        let results = try await within(.seconds(60), "2,000 deliveries through a 10-message queue") {
            await producer.send(cluster.messages(count: 2_000, keys: 30))
        }
        try await producer.close(within: .seconds(30))
        let offsets = results.compactMap { try? $0.get() }.map { "\($0.partition):\($0.offset)" }
        #expect(offsets.count == 2_000, "a message failed instead of waiting for room")
        #expect(Set(offsets).count == 2_000)
        let stored = try await KafkaAdmin(configuration: cluster.configuration).offsets(of: [cluster.topic])
        #expect(stored.map(\.high).reduce(0, +) == 2_000)
    }

    /// `enqueueBlocking` on a thread of its own: it waits for room in a 10-message queue, keeps each key's order
    /// and reports each message at its own index, a refused one included, each report once.
    @Test func aBlockingSendWaitsForRoomAndReportsEachMessageInItsPlace() async throws {
        let cluster = try TestCluster(partitions: 3, extra: [
            "producer.queue.buffering.max.messages": "10", "producer.message.max.bytes": "10000",
        ])
        let producer = try KafkaProducer(configuration: cluster.configuration)
        var messages = cluster.messages(count: 2_000, keys: 30)
        messages.insert(OutgoingMessage(topic: cluster.topic, key: "key-0", value: Array(repeating: 1, count: 20_000)), at: 1_000)
        let sent = messages
        let results = try await within(.seconds(60), "2,001 reports through a 10-message queue") {
            await withCheckedContinuation { continuation in
                Thread.detachNewThread {
                    let deliveries = producer.enqueueBlocking(sent)
                    var reports = deliveries.takeReports()
                    while !deliveries.waitBlocking(upTo: .milliseconds(50)) { reports += deliveries.takeReports() }
                    reports += deliveries.takeReports()
                    reports += deliveries.takeReports()
                    #expect(Set(reports.map(\.index)).count == reports.count, "a report was taken twice")
                    continuation.resume(returning: reports.sorted { $0.index < $1.index }.map(\.result))
                }
            }
        }
        try await producer.close(within: .seconds(30))
        #expect(results.count == 2_001)
        if case .failure(let error) = results[1_000] {
            #expect(error.code == 10) // MSG_SIZE_TOO_LARGE
        } else {
            Issue.record("the oversized message was reported delivered")
        }
        var delivered = results
        delivered.remove(at: 1_000)
        messages.remove(at: 1_000)
        let reports = delivered.compactMap { try? $0.get() }
        #expect(reports.count == 2_000, "a message failed instead of waiting for room")
        var last: [String: Int64] = [:]
        var inOrder = true
        for (message, report) in zip(messages, reports) {
            let key = String(decoding: message.key ?? [], as: UTF8.self)
            inOrder = inOrder && report.offset > last[key, default: -1]
            last[key] = report.offset
        }
        #expect(inOrder, "a key's messages were stored out of the order they were sent in")
    }

    @Test func aMessageOverTheSizeLimitFailsToTheSender() async throws {
        let cluster = try TestCluster(partitions: 1, extra: ["producer.message.max.bytes": "10000"])
        let producer = try KafkaProducer(configuration: cluster.configuration)
        let small = OutgoingMessage(topic: cluster.topic, key: "k", value: Array(repeating: 1, count: 100))
        let large = OutgoingMessage(topic: cluster.topic, key: "k", value: Array(repeating: 1, count: 20_000))
        let results = try await within(.seconds(30), "two delivery reports") { await producer.send([small, large]) }
        try await producer.close(within: .seconds(30))
        #expect((try? results[0].get()) != nil)
        #expect {
            try results[1].get()
        } throws: { error in
            (error as? KafkaError)?.code == 10 // MSG_SIZE_TOO_LARGE
        }
    }

    @Test func aDeliveryThatCannotReachABrokerFailsToTheSender() async throws {
        let cluster = try TestCluster(partitions: 1, extra: ["producer.message.timeout.ms": "1500"])
        try cluster.cluster.setAllBrokersDown()
        let producer = try KafkaProducer(configuration: cluster.configuration)
        let result = try await within(.seconds(30), "the delivery report") {
            await producer.send([OutgoingMessage(topic: cluster.topic, key: "k", value: [1])])[0]
        }
        try await within(.seconds(30), "the producer closes") { await producer.close(flushTimeout: .seconds(1)) }
        #expect {
            try result.get()
        } throws: { error in
            (error as? KafkaError)?.code == -192 // _MSG_TIMED_OUT
        }
    }

    @Test func watermarksAndCommittedOffsetsShowAGroupsLag() async throws {
        let cluster = try TestCluster(partitions: 2)
        let producer = try KafkaProducer(configuration: cluster.configuration)
        try await producer.deliver(cluster.messages(count: 100, keys: 7))
        try await producer.close(within: .seconds(30))

        let consumer = try KafkaConsumer(configuration: cluster.configuration, group: "lag", topics: [cluster.topic])
        let ledger = Ledger()
        try await within(.seconds(60), "consume everything") {
            try await consume(consumer, into: ledger) { ledger.count >= 100 }
        }
        try await consumer.close(within: .seconds(30))

        let admin = try KafkaAdmin(configuration: cluster.configuration)
        let offsets = try await admin.offsets(of: [cluster.topic], group: "lag")
        #expect(offsets.count == 2)
        #expect(offsets.map(\.high).reduce(0, +) == 100)
        #expect(offsets.allSatisfy { $0.committed == $0.high && $0.lag == 0 })
        let fresh = try await admin.offsets(of: [cluster.topic], group: "never-consumed")
        #expect(fresh.map(\.lag).reduce(0, +) == 100)
    }
}

/// What a consumer reported beside its messages, from any task.
private final class SeenEvents: Sendable {
    private let events = Mutex<[KafkaConsumerEvent]>([])
    func add(_ event: KafkaConsumerEvent) { events.withLock { $0.append(event) } }

    var revocations: Int {
        events.withLock { $0.filter { if case .revoked = $0 { true } else { false } }.count }
    }

    var commitErrors: [KafkaError] {
        events.withLock {
            $0.compactMap { event in
                guard case .error(let error) = event, case .broker(_, _, _, let operation) = error, operation.hasPrefix("commit") else { return nil }
                return error
            }
        }
    }
}

/// A member of `group` that consumed 20 messages and whose offsets the coordinator has, still consuming.
private struct MemberWithCommittedOffsets {
    let consumer: KafkaConsumer
    let events = SeenEvents()
    let ledger = Ledger()
    let watcher: Task<Void, Never>
    let consuming: Task<Int, any Error>

    init(_ cluster: TestCluster, group: String) async throws {
        let producer = try KafkaProducer(configuration: cluster.configuration)
        try await producer.deliver(cluster.messages(count: 20, keys: 4), within: .seconds(30))
        try await producer.close(within: .seconds(30))

        let consumer = try KafkaConsumer(configuration: cluster.configuration, group: group, topics: [cluster.topic])
        self.consumer = consumer
        let events = events, ledger = ledger
        watcher = Task { for await event in consumer.events { events.add(event) } }
        consuming = Task { try await consume(consumer, into: ledger) { false } }
        let admin = try KafkaAdmin(configuration: cluster.configuration)
        let partitions = (0..<cluster.partitions).map { TopicPartition(cluster.topic, $0) }
        try await waitUntil(.seconds(30), "the 20 messages are consumed and their offsets committed") {
            let committed = try await admin.committedOffsets(group: group, partitions: partitions)
            return ledger.count == 20 && committed.values.reduce(0, +) == 20
        }
    }
}
