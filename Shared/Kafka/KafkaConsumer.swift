import CRdKafka
import Dispatch
import Foundation
import Logging
import Synchronization

/// How many messages a batch holds at most, and how long the poll thread lingers to fill one.
public struct ConsumerBatching: Sendable {
    public var maxMessages: Int
    /// Zero takes only what is already fetched once the first message is in, which keeps latency lowest.
    public var linger: Duration

    public init(maxMessages: Int = 500, linger: Duration = .zero) {
        precondition(maxMessages > 0, "a batch holds at least one message")
        self.maxMessages = maxMessages
        self.linger = linger
    }
}

/// Messages of one poll, handed over together. Commit it (or release it) before the next one comes.
public struct ConsumerBatch: Sendable {
    public let id: UInt64
    public let messages: [ConsumedMessage]
    /// Partitions whose log now starts below where this group was reading (the topic was recreated, or the
    /// cluster lost what it held), with the offset reading went back to. Whoever keeps positions of its own must
    /// move them back here, or it would take what the log holds now for what it already applied.
    public internal(set) var logRestarts: [TopicPartition: Int64] = [:]
    /// Per partition, the first and last offset in this batch, in order of first appearance.
    let ranges: [(partition: TopicPartition, first: Int64, last: Int64)]

    init(id: UInt64, messages: [ConsumedMessage]) {
        self.id = id
        self.messages = messages
        var ranges: [(partition: TopicPartition, first: Int64, last: Int64)] = []
        var current = -1
        for message in messages {
            // Messages of one partition mostly arrive together, so the last range is almost always the match.
            if current < 0 || ranges[current].partition.partition != message.partition || ranges[current].partition.topic != message.topic {
                current = ranges.firstIndex { $0.partition.partition == message.partition && $0.partition.topic == message.topic } ?? -1
                if current < 0 {
                    ranges.append((message.topicPartition, message.offset, message.offset))
                    current = ranges.count - 1
                    continue
                }
            }
            ranges[current].first = min(ranges[current].first, message.offset)
            ranges[current].last = max(ranges[current].last, message.offset)
        }
        self.ranges = ranges
    }

    /// The offset to commit per partition: one past the last message of that partition in this batch.
    public var nextOffsets: [TopicPartition: Int64] {
        Dictionary(uniqueKeysWithValues: ranges.map { ($0.partition, $0.last + 1) })
    }

    /// The first offset per partition, where a released batch is read again from.
    var firstOffsets: [TopicPartition: Int64] {
        Dictionary(uniqueKeysWithValues: ranges.map { ($0.partition, $0.first) })
    }
}

/// What happens to a consumer beside its messages.
public enum KafkaConsumerEvent: Sendable, Equatable {
    case assigned([TopicPartition])
    case revoked([TopicPartition])
    /// The log no longer holds the offset this group was to read next: messages `expected..<resumedAt` are gone.
    /// On the embedded cluster, whose partitions keep only their newest 5 MB, this is how data loss shows.
    case offsetFellOffLog(TopicPartition, expected: Int64, resumedAt: Int64)
    /// Offsets `expected..<resumedAt` are still in the log, yet the partition delivered `resumedAt` next: not a
    /// loss Kafka announced, so something skipped them (a seek, a position ahead of what was applied).
    case offsetGap(TopicPartition, expected: Int64, resumedAt: Int64)
    /// The partition delivered `resumedAt`, below the `expected` offset this group was to read next: the log is
    /// shorter than the group's position (a topic recreated, a cluster restarted empty, a log truncated), and
    /// librdkafka went back to where it starts now (`auto.offset.reset`). The batch says so (`logRestarts`).
    case logRestarted(TopicPartition, expected: Int64, resumedAt: Int64)
    /// A non-fatal error; the consumer carries on.
    case error(KafkaError)
    /// The coordinator answered this member's join: who it is now, and whom the group elected to assign the
    /// partitions. Reported only when librdkafka's `cgrp` debug context is on (the embedded cluster's tuning),
    /// because librdkafka tells it nowhere else.
    case joined(JoinGroupAnswer)
}

/// A join the coordinator answered, as librdkafka 2.0.2 logs it in its `cgrp` debug context (facility
/// `JOINGROUP`): "JoinGroup response: GenerationId 3, Protocol range, LeaderId L, my MemberId M, member metadata
/// count 0: (no error)". librdkafka offers no call for the leader's member ID; the embedded cluster needs it to
/// find a dead member that no instance could record (see `MemberRecords`). A line in another form is not a join.
public struct JoinGroupAnswer: Sendable, Equatable {
    public let generation: Int32
    public let member: String
    public let leader: String

    public var isLeader: Bool { member == leader }

    public init(generation: Int32, member: String, leader: String) {
        self.generation = generation
        self.member = member
        self.leader = leader
    }

    /// `line` as the log callback has it: after the logging thread's name ("[thrd:main]: ").
    init?(logLine line: String) {
        guard let start = line.range(of: "JoinGroup response: GenerationId "), line.hasSuffix(": (no error)"),
              let generationEnd = line.range(of: ", Protocol ", range: start.upperBound..<line.endIndex),
              let leaderStart = line.range(of: ", LeaderId ", range: generationEnd.upperBound..<line.endIndex),
              let memberStart = line.range(of: ", my MemberId ", range: leaderStart.upperBound..<line.endIndex),
              let memberEnd = line.range(of: ", member metadata count ", range: memberStart.upperBound..<line.endIndex),
              let generation = Int32(line[start.upperBound..<generationEnd.lowerBound])
        else { return nil }
        var leader = line[leaderStart.upperBound..<memberStart.lowerBound]
        if leader.hasSuffix(" (me)") { leader = leader.dropLast(5) }
        let member = line[memberStart.upperBound..<memberEnd.lowerBound]
        guard !leader.isEmpty, !member.isEmpty else { return nil }
        self.init(generation: generation, member: String(member), leader: String(leader))
    }
}

/// A member of a balanced consumer group that hands over messages in batches.
///
/// One dedicated thread owns every consumer call. It polls a batch, hands it over through `batches`, and then
/// waits for that batch to be committed (or released) before it polls again. A commit goes to the coordinator
/// asynchronously, so the next batch need not wait a round trip; the offsets of every committed batch are
/// committed again, synchronously (for 5 s at most), when partitions are revoked and when the consumer closes.
/// Rebalance callbacks run only inside a poll, so by the time partitions are revoked the batch in hand is
/// finished and its offsets are committed before the partitions go; on assignment, reading resumes at the
/// committed offsets, or where `startingOffsets` says (a service's database, which knows what it applied better
/// than Kafka does). If a rebalance happens while a batch is being assembled, the batch is dropped and its
/// partitions rewound, because it may hold messages from before it.
public final class KafkaConsumer: Sendable {
    public let batches: AsyncThrowingStream<ConsumerBatch, Error>
    public let events: AsyncStream<KafkaConsumerEvent>

    private let client: RdKafkaClient
    private let core: ConsumerCore
    private let pollThread: PollThread

    public init(
        configuration: KafkaConfiguration,
        group: String,
        topics: [String],
        batching: ConsumerBatching = ConsumerBatching(),
        startingOffsets: StartingOffsets? = nil,
        logger: Logger = Logger(label: "emporium.kafka.consumer")
    ) throws {
        let (batches, batchSink) = AsyncThrowingStream<ConsumerBatch, Error>.makeStream()
        let (events, eventSink) = AsyncStream<KafkaConsumerEvent>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        let core = ConsumerCore(batchSink: batchSink, eventSink: eventSink, startingOffsets: startingOffsets, logger: logger)
        let client = try RdKafkaClient(type: RD_KAFKA_CONSUMER, properties: configuration.consumerProperties(group: group), callbackContext: core) { conf in
            rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(core).toOpaque())
            rd_kafka_conf_set_rebalance_cb(conf, rebalanceCallback)
            rd_kafka_conf_set_offset_commit_cb(conf, offsetCommitCallback)
            rd_kafka_conf_set_log_cb(conf, consumerLogCallback)
        }
        rd_kafka_poll_set_consumer(client.handle)
        try withPartitionList(topics.map { (TopicPartition($0, RD_KAFKA_PARTITION_UA), 0) }) { list in
            let code = rd_kafka_subscribe(client.handle, list)
            if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(code, operation: "subscribe to \(topics)") }
        }
        self.batches = batches
        self.events = events
        self.client = client
        self.core = core
        pollThread = PollThread(name: "kafka-consumer-poll") { thread in
            core.run(client: client, batching: batching, thread: thread)
        }
    }

    /// Commits the batch's offsets: at once and asynchronously, then synchronously before its partitions are
    /// revoked or the consumer closes. Call it only after the batch is processed; the next batch comes after it.
    public func commit(_ batch: ConsumerBatch) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            core.acknowledge(batch.id, .commit(batch.nextOffsets, continuation))
        }
    }

    /// Gives the batch back unprocessed: the next batch starts again at its first messages.
    public func release(_ batch: ConsumerBatch) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            core.acknowledge(batch.id, .release(batch.firstOffsets, continuation))
        }
    }

    /// Leaves the group. A batch in hand that was not committed is read again by the next owner.
    public func close() async {
        core.stop()
        let client = self.client
        pollThread.requestStop { client.wakePoller(consumer: true) }
        await pollThread.join()
    }

    /// Moves a partition's read position behind the consumer's back, as a bug that skipped messages would: the
    /// consumer still expects the offset it would have read next. Call it while a batch is in hand.
    @_spi(Testing) public func seekWithoutTelling(_ partition: TopicPartition, to offset: Int64) throws {
        try withPartitionList([(partition, offset)]) { list in
            guard let error = rd_kafka_seek_partitions(client.handle, list, 5000) else { return }
            defer { rd_kafka_error_destroy(error) }
            throw KafkaError.from(rd_kafka_error_code(error), operation: "seek \(partition) to \(offset)")
        }
    }

    /// The ID the group's coordinator gave this member; nil until its first join is answered.
    public func memberID() -> String? {
        guard let pointer = rd_kafka_memberid(client.handle) else { return nil }
        defer { rd_kafka_mem_free(client.handle, pointer) }
        let id = String(cString: pointer)
        return id.isEmpty ? nil : id
    }

    /// The partitions currently assigned to this member.
    public func assignment() -> [TopicPartition] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(client.handle, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        return list.entries.map(\.partition).sorted()
    }

    /// Per assigned partition, how far this member is behind the log's end: the high watermark librdkafka last
    /// saw in a fetch (no request is made) minus the next offset to be handed over. A partition this member has
    /// not fetched from yet is left out.
    public func lag() -> [TopicPartition: Int64] {
        let assigned = assignment()
        guard !assigned.isEmpty else { return [:] }
        return withPartitionList(assigned.map { ($0, Int64(RD_KAFKA_OFFSET_INVALID)) }) { list in
            guard rd_kafka_position(client.handle, list) == RD_KAFKA_RESP_ERR_NO_ERROR else { return [:] }
            var lag: [TopicPartition: Int64] = [:]
            for entry in list.entries where entry.offset >= 0 {
                var low: Int64 = 0
                var high: Int64 = 0
                guard rd_kafka_get_watermark_offsets(client.handle, entry.partition.topic, entry.partition.partition, &low, &high)
                    == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { continue }
                lag[entry.partition] = max(0, high - entry.offset)
            }
            return lag
        }
    }
}

/// Topic names by librdkafka topic handle, so a batch builds each name once rather than once per message.
struct TopicNames {
    private var names: [(OpaquePointer, String)] = []

    mutating func name(of handle: OpaquePointer?) -> String {
        guard let handle else { return "" }
        if let known = names.first(where: { $0.0 == handle }) { return known.1 }
        let name = String(cString: rd_kafka_topic_name(handle))
        names.append((handle, name))
        return name
    }
}

/// Where to start reading newly assigned partitions, asked on each assignment (on the poll thread): the next
/// offset per partition, or nil to fall back on the group's committed offsets. A partition missing from the
/// answer starts at the beginning of its log.
public typealias StartingOffsets = @Sendable ([TopicPartition]) -> [TopicPartition: Int64]?

/// What the async side tells the poll thread about the batch in hand.
enum BatchAcknowledgement {
    case commit([TopicPartition: Int64], CheckedContinuation<Void, Error>)
    case release([TopicPartition: Int64], CheckedContinuation<Void, Error>)

    func fail(_ error: KafkaError) {
        switch self {
        case .commit(_, let continuation), .release(_, let continuation): continuation.resume(throwing: error)
        }
    }
}

/// The consumer's state, shared between the poll thread, the rebalance callback (which runs on the poll thread)
/// and the async side, all behind one lock that is never held across a librdkafka call.
final class ConsumerCore: Sendable {
    private struct State {
        var batchInHand: UInt64?
        var acknowledgement: BatchAcknowledgement?
        var stopping = false
        var nextBatchID: UInt64 = 0
        var assignment: Set<TopicPartition> = []
        /// Bumped on every rebalance, so the poll thread notices one that happened while it assembled a batch.
        var assignmentGeneration: UInt64 = 0
        /// The offset each partition should deliver next, to notice when the log skipped ahead.
        var expectedOffsets: [TopicPartition: Int64] = [:]
        /// Log restarts noticed and not yet in a committed batch: a released batch's are handed over again.
        var pendingRestarts: [TopicPartition: Int64] = [:]
        /// Offsets of committed batches since the assignment, committed synchronously again on revoke.
        var processedOffsets: [TopicPartition: Int64] = [:]
    }

    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let batchSink: AsyncThrowingStream<ConsumerBatch, Error>.Continuation
    private let eventSink: AsyncStream<KafkaConsumerEvent>.Continuation
    private let startingOffsets: StartingOffsets?
    let logger: Logger

    init(
        batchSink: AsyncThrowingStream<ConsumerBatch, Error>.Continuation,
        eventSink: AsyncStream<KafkaConsumerEvent>.Continuation,
        startingOffsets: StartingOffsets?,
        logger: Logger
    ) {
        self.batchSink = batchSink
        self.eventSink = eventSink
        self.startingOffsets = startingOffsets
        self.logger = logger
    }

    func acknowledge(_ batchID: UInt64, _ acknowledgement: BatchAcknowledgement) {
        let accepted = state.withLock { state -> KafkaError? in
            guard !state.stopping else { return KafkaError.consumerClosed }
            guard state.batchInHand == batchID, state.acknowledgement == nil else { return KafkaError.unknownBatch(batchID) }
            state.acknowledgement = acknowledgement
            return nil
        }
        if let error = accepted {
            acknowledgement.fail(error)
        } else {
            wake.signal()
        }
    }

    func stop() {
        let pending = state.withLock { state in
            state.stopping = true
            defer { state.acknowledgement = nil }
            return state.acknowledgement
        }
        pending?.fail(.consumerClosed)
        wake.signal()
    }

    func report(_ event: KafkaConsumerEvent) {
        switch event {
        case .offsetFellOffLog(let partition, let expected, let resumedAt):
            logger.critical("offsets \(expected)..<\(resumedAt) of \(partition) fell off the log before this group read them: those messages are lost to it")
        case .offsetGap(let partition, let expected, let resumedAt):
            logger.critical("offsets \(expected)..<\(resumedAt) of \(partition) are in the log but were skipped: this group never applied them")
        case .logRestarted(let partition, let expected, let resumedAt):
            logger.critical("\(partition) was to be read from offset \(expected), but its log now ends below that: reading it again from offset \(resumedAt)")
        case .error(let error):
            logger.error("\(error)")
        case .assigned(let partitions):
            logger.info("assigned \(partitions.count) partitions")
        case .revoked(let partitions):
            logger.info("revoked \(partitions.count) partitions")
        case .joined(let answer):
            logger.debug("joined as member \(answer.member) of generation \(answer.generation); leader \(answer.leader)")
        }
        eventSink.yield(event)
    }

    // MARK: The poll thread

    func run(client: RdKafkaClient, batching: ConsumerBatching, thread: PollThread) {
        let rk = client.handle
        let queue = rd_kafka_queue_get_consumer(rk)!
        defer { rd_kafka_queue_destroy(queue) }
        let spare = UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>.allocate(capacity: batching.maxMessages)
        defer { spare.deallocate() }
        let lingerMilliseconds = Int32(batching.linger.components.seconds * 1000
            + batching.linger.components.attoseconds / 1_000_000_000_000_000)

        while !thread.isStopping {
            // Block for the first message only: a batch call would wait out its whole timeout unless the batch filled.
            guard let first = rd_kafka_consumer_poll(rk, 100) else { continue }
            let generation = state.withLock { $0.assignmentGeneration }
            var raw = [first]
            if batching.maxMessages > 1 {
                let count = rd_kafka_consume_batch_queue(queue, lingerMilliseconds, spare, batching.maxMessages - 1)
                for index in 0..<max(0, count) { raw.append(spare[index]!) }
            }
            var topicNames = TopicNames()
            let messages = raw.compactMap { convert($0, topicNames: &topicNames) }
            raw.forEach { rd_kafka_message_destroy($0) }
            if let fatal = client.fatalError() {
                batchSink.finish(throwing: fatal)
                break
            }
            guard !messages.isEmpty else { continue }
            if state.withLock({ $0.assignmentGeneration }) != generation {
                rewind(rk, to: ConsumerBatch(id: 0, messages: messages).firstOffsets)
                continue
            }
            guard let batch = handOver(messages, rk) else { break }
            guard let acknowledgement = awaitAcknowledgement(of: batch) else { break }
            switch acknowledgement {
            case .commit(let offsets, let continuation):
                state.withLock { state in
                    state.processedOffsets.merge(offsets) { max($0, $1) }
                    for partition in batch.logRestarts.keys { state.pendingRestarts[partition] = nil }
                }
                continuation.resume(with: Result { try commitAsynchronously(rk, offsets) })
            case .release(let offsets, let continuation):
                rewind(rk, to: offsets)
                continuation.resume()
            }
        }
        leaveGroup(rk, within: .seconds(10))
        batchSink.finish()
        eventSink.finish()
    }

    /// Closes the consumer: its assignment is revoked (committing what was processed) and it leaves the group.
    /// librdkafka 2.0.2's blocking `rd_kafka_consumer_close` can wait for ever once Kafka is gone: a SIGTERMed
    /// service whose cluster had been killed under load never exited. This is the same close, through a queue
    /// served here, with an end; a member that could not leave is dropped when its session runs out.
    private func leaveGroup(_ rk: OpaquePointer, within limit: Duration) {
        guard let queue = rd_kafka_queue_new(rk) else { return }
        defer { rd_kafka_queue_destroy(queue) }
        if let error = rd_kafka_consumer_close_queue(rk, queue) {
            report(.error(.from(rd_kafka_error_code(error), operation: "close the consumer")))
            rd_kafka_error_destroy(error)
            return
        }
        let deadline = ContinuousClock.now + limit
        while rd_kafka_consumer_closed(rk) == 0 {
            guard ContinuousClock.now < deadline else {
                logger.warning("stopped without leaving the group: Kafka did not answer within \(limit)")
                return
            }
            guard let event = rd_kafka_queue_poll(queue, 100) else { continue }
            // Polled as events, the revocation is handed over rather than passed to the rebalance callback.
            if rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE, let partitions = rd_kafka_event_topic_partition_list(event) {
                rebalance(rk, rd_kafka_event_error(event), partitions)
            }
            rd_kafka_event_destroy(event)
        }
    }

    /// Copies a librdkafka message into Swift, or reports it if it carries an error.
    private func convert(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>, topicNames: inout TopicNames) -> ConsumedMessage? {
        let message = pointer.pointee
        let topic = topicNames.name(of: message.rkt)
        guard message.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            switch message.err {
            case RD_KAFKA_RESP_ERR__PARTITION_EOF:
                break
            case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE, RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
                report(.error(.from(message.err, operation: "fetch \(TopicPartition(topic, message.partition)) at offset \(message.offset)")))
            default:
                report(.error(.from(message.err, operation: "consume")))
            }
            return nil
        }
        var headerList: OpaquePointer?
        if rd_kafka_message_headers(pointer, &headerList) != RD_KAFKA_RESP_ERR_NO_ERROR { headerList = nil }
        let key = message.key.map { UnsafeRawBufferPointer(start: $0, count: message.key_len) }
        let value = UnsafeRawBufferPointer(start: message.payload, count: message.payload == nil ? 0 : message.len)
        var layout = MessageLayout(key: key?.count, value: value.count)
        forEachHeader(of: headerList) { name, value in layout.addHeader(name: name.count, value: value.count) }
        let bytes = layout.fill { writer in
            if let key { writer.append(key) }
            writer.append(value)
            forEachHeader(of: headerList) { writer.appendHeader(name: $0, value: $1) }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(pointer, &timestampType)
        return ConsumedMessage(
            topic: topic, partition: message.partition, offset: message.offset,
            timestamp: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp, bytes: bytes, layout: layout
        )
    }

    /// Each header's name and value as librdkafka holds them, valid until the message is destroyed.
    private func forEachHeader(of list: OpaquePointer?, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) {
        guard let list else { return }
        var index = 0
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while rd_kafka_header_get_all(list, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            let nameBytes = name.map { UnsafeRawBufferPointer(start: $0, count: strlen($0)) } ?? UnsafeRawBufferPointer(start: nil, count: 0)
            body(nameBytes, UnsafeRawBufferPointer(start: value, count: value == nil ? 0 : size))
            index += 1
        }
    }

    /// Notices a partition whose log skipped ahead of where this group was reading, or went back below it (and
    /// marks the batch with the restart). librdkafka delivers each partition's messages in offset order, and this
    /// consumer's own rewinds move what it expects, so only the first offset of each partition in a batch can
    /// differ, and only because the log did.
    private func noticeOffsetJumps(_ batch: inout ConsumerBatch, _ rk: OpaquePointer) {
        let (skips, restarts) = state.withLock { state in
            var skips: [(TopicPartition, expected: Int64, resumedAt: Int64)] = []
            var restarts: [(TopicPartition, expected: Int64, resumedAt: Int64)] = []
            for range in batch.ranges {
                if let expected = state.expectedOffsets[range.partition], range.first > expected {
                    skips.append((range.partition, expected, range.first))
                } else if let expected = state.expectedOffsets[range.partition], range.first < expected {
                    restarts.append((range.partition, expected, range.first))
                    state.pendingRestarts[range.partition] = range.first
                }
                state.expectedOffsets[range.partition] = range.last + 1
            }
            batch.logRestarts = state.pendingRestarts.filter { state.assignment.contains($0.key) }
            return (skips, restarts)
        }
        for (partition, expected, resumedAt) in restarts { report(.logRestarted(partition, expected: expected, resumedAt: resumedAt)) }
        // Rare, so worth a round trip: where the log starts now tells a loss Kafka caused from a skip.
        for (partition, expected, resumedAt) in skips {
            var low: Int64 = -1, high: Int64 = -1
            let code = rd_kafka_query_watermark_offsets(rk, partition.topic, partition.partition, &low, &high, 5000)
            if code == RD_KAFKA_RESP_ERR_NO_ERROR, low <= expected {
                report(.offsetGap(partition, expected: expected, resumedAt: resumedAt))
            } else {
                report(.offsetFellOffLog(partition, expected: expected, resumedAt: resumedAt))
            }
        }
    }

    private func handOver(_ messages: [ConsumedMessage], _ rk: OpaquePointer) -> ConsumerBatch? {
        let id = state.withLock { state -> UInt64? in
            guard !state.stopping else { return nil }
            state.nextBatchID += 1
            state.batchInHand = state.nextBatchID
            return state.nextBatchID
        }
        guard let id else { return nil }
        var batch = ConsumerBatch(id: id, messages: messages)
        noticeOffsetJumps(&batch, rk)
        batchSink.yield(batch)
        return batch
    }

    private func awaitAcknowledgement(of batch: ConsumerBatch) -> BatchAcknowledgement? {
        while true {
            wake.wait()
            let outcome = state.withLock { state -> (done: Bool, BatchAcknowledgement?) in
                if state.stopping { return (true, nil) }
                guard let acknowledgement = state.acknowledgement else { return (false, nil) }
                state.acknowledgement = nil
                state.batchInHand = nil
                return (true, acknowledgement)
            }
            if outcome.done { return outcome.1 }
        }
    }

    /// Hands the offsets to librdkafka, which sends them to the coordinator in the background.
    private func commitAsynchronously(_ rk: OpaquePointer, _ offsets: [TopicPartition: Int64]) throws {
        try withPartitionList(offsets.sorted { $0.key < $1.key }) { list in
            let code = rd_kafka_commit(rk, list, 1)
            if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(code, operation: "commit offsets") }
        }
    }

    /// Commits and waits for the coordinator's answer, for at most `limit`. librdkafka's synchronous commit has
    /// no end: a service SIGTERMed just after its cluster was killed waited in it for good, its poll thread
    /// holding up the stop. Given up, the commit may still land later; the next owner reads again from the
    /// offsets committed before, as after a crash.
    private func commitAndWait(_ rk: OpaquePointer, _ offsets: [TopicPartition: Int64], upTo limit: Duration) throws {
        guard let queue = rd_kafka_queue_new(rk) else { throw KafkaError.fatal("librdkafka gave no queue to commit through") }
        // librdkafka's answer holds its own reference to the queue, so letting go of it here is safe.
        defer { rd_kafka_queue_destroy(queue) }
        try withPartitionList(offsets.sorted { $0.key < $1.key }) { list in
            let code = rd_kafka_commit_queue(rk, list, queue, nil, nil)
            if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(code, operation: "commit offsets") }
        }
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            guard let event = rd_kafka_queue_poll(queue, 100) else { continue }
            defer { rd_kafka_event_destroy(event) }
            guard rd_kafka_event_type(event) == RD_KAFKA_EVENT_OFFSET_COMMIT else { continue }
            let code = rd_kafka_event_error(event)
            if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(code, operation: "commit offsets") }
            if let list = rd_kafka_event_topic_partition_list(event), let failed = list.entries.first(where: { $0.error != RD_KAFKA_RESP_ERR_NO_ERROR }) {
                throw KafkaError.from(failed.error, operation: "commit offset of \(failed.partition)")
            }
            return
        }
        throw KafkaError.from(RD_KAFKA_RESP_ERR__TIMED_OUT, operation: "commit offsets (no answer within \(limit))")
    }

    /// Moves each still-assigned partition back so that these offsets are delivered again.
    private func rewind(_ rk: OpaquePointer, to offsets: [TopicPartition: Int64]) {
        let assigned = state.withLock { state in
            let assigned = offsets.filter { state.assignment.contains($0.key) }
            for (partition, offset) in assigned { state.expectedOffsets[partition] = offset }
            return assigned
        }
        guard !assigned.isEmpty else { return }
        withPartitionList(assigned.sorted { $0.key < $1.key }) { list in
            if let error = rd_kafka_seek_partitions(rk, list, 5000) {
                report(.error(.from(rd_kafka_error_code(error), operation: "rewind \(assigned.keys.sorted())")))
                rd_kafka_error_destroy(error)
            }
        }
    }

    // MARK: Rebalance, on the poll thread

    fileprivate func rebalance(_ rk: OpaquePointer, _ code: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let partitions = list.entries.map(\.partition).sorted()
        if code == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            let expected: [TopicPartition: Int64]
            if let stored = startingOffsets?(partitions) {
                // Each partition starts where its owner's records say; rd_kafka_assign seeks to the list's offsets.
                for index in 0..<Int(list.pointee.cnt) {
                    let partition = TopicPartition(String(cString: list.pointee.elems[index].topic), list.pointee.elems[index].partition)
                    list.pointee.elems[index].offset = stored[partition] ?? Int64(RD_KAFKA_OFFSET_BEGINNING)
                }
                expected = stored.filter { partitions.contains($0.key) }
            } else {
                expected = committedOffsets(rk, list)
            }
            state.withLock { state in
                state.assignment = Set(partitions)
                state.assignmentGeneration += 1
                state.expectedOffsets = expected
            }
            let assignCode = rd_kafka_assign(rk, list)
            if assignCode != RD_KAFKA_RESP_ERR_NO_ERROR { report(.error(.from(assignCode, operation: "assign"))) }
            report(.assigned(partitions))
        } else {
            // No batch is in hand during a poll, so every processed offset is known: commit them all before
            // the partitions go, synchronously, in case an asynchronous commit has not reached the coordinator.
            // Unless they were lost: the session ended without the coordinator (unreachable, or it already
            // dropped this member), so a commit would wait for it and then be refused, holding the poll thread
            // and the partitions' revocation for seconds. Their next owner starts from the offsets committed
            // before, or, in a service, from its own database's positions.
            let lost = rd_kafka_assignment_lost(rk) != 0
            let processed = state.withLock { state in
                state.assignment = []
                state.assignmentGeneration += 1
                state.expectedOffsets = [:]
                state.pendingRestarts = [:]
                defer { state.processedOffsets = [:] }
                return state.processedOffsets
            }
            if lost {
                logger.warning("lost \(partitions.count) partitions (the group's session ended): letting them go without committing")
            } else if !processed.isEmpty {
                do { try commitAndWait(rk, processed, upTo: .seconds(5)) } catch let error as KafkaError { report(.error(error)) } catch {}
            }
            rd_kafka_assign(rk, nil)
            if code == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                report(.revoked(partitions))
            } else {
                report(.error(.from(code, operation: "rebalance")))
            }
        }
    }

    /// The group's committed offsets for newly assigned partitions, so a skip past them can be noticed.
    private func committedOffsets(_ rk: OpaquePointer, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [TopicPartition: Int64] {
        guard let copy = rd_kafka_topic_partition_list_copy(list) else { return [:] }
        defer { rd_kafka_topic_partition_list_destroy(copy) }
        guard rd_kafka_committed(rk, copy, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR else { return [:] }
        var offsets: [TopicPartition: Int64] = [:]
        for entry in copy.entries where entry.error == RD_KAFKA_RESP_ERR_NO_ERROR && entry.offset >= 0 {
            offsets[entry.partition] = entry.offset
        }
        return offsets
    }
}

/// Reports failed asynchronous commits; librdkafka calls it from inside a consumer poll.
/// A commit refused because the group is rebalancing is expected: the synchronous commit on revoke covers it.
private let offsetCommitCallback: @convention(c) (
    OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?
) -> Void = { _, code, _, opaque in
    guard let opaque, code != RD_KAFKA_RESP_ERR_NO_ERROR, code != RD_KAFKA_RESP_ERR__NO_OFFSET else { return }
    let core = Unmanaged<ConsumerCore>.fromOpaque(opaque).takeUnretainedValue()
    switch code {
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
        core.logger.debug("asynchronous commit refused during a rebalance; the commit on revoke covers it")
    default:
        core.report(.error(.from(code, operation: "commit offsets")))
    }
}

/// Hears the joins the coordinator answers (`JoinGroupAnswer`), then logs the line as every client does. Called
/// from librdkafka's own threads; the core it reaches outlives the client (`RdKafkaClient`'s callback context).
private let consumerLogCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = {
    client, level, facility, text in
    if let client, let facility, let text, strcmp(facility, "JOINGROUP") == 0, let opaque = rd_kafka_opaque(client),
       let answer = JoinGroupAnswer(logLine: String(cString: text)) {
        Unmanaged<ConsumerCore>.fromOpaque(opaque).takeUnretainedValue().report(.joined(answer))
    }
    logLibrdkafkaLine(client, level, facility, text)
}

/// librdkafka calls this from inside a consumer poll, so always on the consumer's poll thread.
private let rebalanceCallback: @convention(c) (
    OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?
) -> Void = { rk, code, list, opaque in
    guard let rk, let list, let opaque else { return }
    Unmanaged<ConsumerCore>.fromOpaque(opaque).takeUnretainedValue().rebalance(rk, code, list)
}
