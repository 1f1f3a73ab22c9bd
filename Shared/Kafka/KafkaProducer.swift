import CRdKafka
import Dispatch
import Logging
import Synchronization

/// A keyed, idempotent producer. Each `send` returns when every delivery report of its messages is in.
///
/// A dedicated thread serves librdkafka's delivery reports as they arrive; no one sleeps waiting for them.
/// When librdkafka's local queue is full, senders wait for reports to free room, so no message is dropped.
public final class KafkaProducer: Sendable {
    private let client: RdKafkaClient
    private let pollThread: PollThread
    private let room = QueueRoom()
    private let topics: TopicHandles
    private let statistics = ProducerStatistics()
    private let logger: Logger

    public init(configuration: KafkaConfiguration, logger: Logger = Logger(label: "emporium.kafka.producer")) throws {
        self.logger = logger
        let statistics = self.statistics
        let client = try RdKafkaClient(type: RD_KAFKA_PRODUCER, properties: configuration.producerProperties(), callbackContext: statistics) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf, deliveryReportCallback)
            rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(statistics).toOpaque())
            rd_kafka_conf_set_stats_cb(conf, statisticsCallback)
        }
        self.client = client
        topics = TopicHandles(client: client)
        let room = self.room
        // Waking a blocked sender for every few reports would hop threads per message; wait for half the queue.
        let lowWater = Int32(configuration.producerProperties()["queue.buffering.max.messages"].flatMap(Int32.init) ?? 100_000) / 2
        pollThread = PollThread(name: "kafka-producer-poll") { thread in
            while !thread.isStopping {
                if rd_kafka_poll(client.handle, 100) > 0, room.hasWaiters, rd_kafka_outq_len(client.handle) <= lowWater {
                    room.signal()
                }
            }
        }
    }

    /// Sends one message and returns where it was stored.
    @discardableResult
    public func send(_ message: OutgoingMessage) async throws -> DeliveryReport {
        try await send([message])[0].get()
    }

    /// Sends messages in order and returns one result per message, in the same order, once all reports are in.
    public func send(_ messages: [OutgoingMessage]) async -> [Result<DeliveryReport, KafkaError>] {
        guard !messages.isEmpty else { return [] }
        let pending = PendingDeliveries(count: messages.count)
        var next = messages.startIndex
        while let full = enqueue(messages, from: next, for: pending) {
            await room.wait(after: full.generation)
            next = full.index
        }
        return await pending.results()
    }

    /// Hands messages to librdkafka in order, blocking the calling thread while its local queue is full, and
    /// returns without waiting for their delivery reports: for a dedicated thread (the outbox relay's), never a
    /// Swift concurrency one, that keeps sending while some partitions' broker is away. Each partition's
    /// messages are stored in the order sent. Waiting on the result wakes no thread but the caller's.
    public func enqueueBlocking(_ messages: [OutgoingMessage]) -> Deliveries {
        let pending = PendingDeliveries(count: messages.count, listsReports: true)
        var next = messages.startIndex
        while let full = enqueue(messages, from: next, for: pending) {
            // Serves reports here while it waits: they free room, and their callbacks are thread-safe.
            rd_kafka_poll(client.handle, 10)
            next = full.index
        }
        return Deliveries(pending)
    }

    /// Hands messages to librdkafka in order from `start`; stops at one its full local queue refuses and says
    /// which, with the queue's generation from before the attempt (to wait for room after).
    private func enqueue(_ messages: [OutgoingMessage], from start: Int, for pending: PendingDeliveries) -> (index: Int, generation: UInt64)? {
        var topicName = ""
        var topic: OpaquePointer?
        for index in start..<messages.endIndex {
            if topic == nil || messages[index].topic != topicName {
                topicName = messages[index].topic
                topic = topics.handle(for: topicName)
            }
            let generation = room.generation
            let code = enqueue(messages[index], topic: topic!, opaque: pending.opaque(for: index))
            if code == RD_KAFKA_RESP_ERR__QUEUE_FULL { return (index, generation) }
            if code != RD_KAFKA_RESP_ERR_NO_ERROR {
                pending.record(index, .failure(.from(code, operation: "produce to \(topicName)")))
            }
            // Serving reports here as well, without blocking, frees delivered messages on the thread that
            // allocated them: freed on the poll thread, glibc hands every block back across arenas.
            if index % 256 == 255 { rd_kafka_poll(client.handle, 0) }
        }
        return nil
    }

    /// Hands one message to librdkafka. On any error librdkafka keeps nothing, so the headers are freed here.
    private func enqueue(_ message: OutgoingMessage, topic: OpaquePointer, opaque: UnsafeMutableRawPointer) -> rd_kafka_resp_err_t {
        let headers = message.headers.isEmpty ? nil : makeHeaders(message.headers)
        let code = message.value.withUnsafeBytes { value in
            withKeyBytes(message.key) { key in
                emporium_produce(
                    client.handle, topic, message.partition ?? RD_KAFKA_PARTITION_UA,
                    key.baseAddress, key.count, value.baseAddress, value.count, headers, opaque
                )
            }
        }
        if code != RD_KAFKA_RESP_ERR_NO_ERROR, let headers { rd_kafka_headers_destroy(headers) }
        return code
    }

    /// Waits up to `timeout` for every queued message to be delivered; returns false if some were not.
    @discardableResult
    /// How many partitions `topic` has, as a broker's metadata says now; nil when the topic is unknown or no
    /// broker answered within `timeout`. Blocks: call it off the Swift concurrency threads.
    public func partitionCount(of topic: String, timeout: Duration = .seconds(5)) -> Int32? {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard rd_kafka_metadata(client.handle, 0, topics.handle(for: topic), &metadata, milliseconds) == RD_KAFKA_RESP_ERR_NO_ERROR,
              let metadata else { return nil }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt == 1, metadata.pointee.topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return metadata.pointee.topics[0].partition_cnt
    }

    public func flush(timeout: Duration = .seconds(10)) async -> Bool {
        let client = self.client
        let milliseconds = timeout.librdkafkaMilliseconds
        let result = try? await offloaded { rd_kafka_flush(client.handle, milliseconds) }
        if result != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.warning("flush timed out with \(rd_kafka_outq_len(client.handle)) messages undelivered; purging them")
            purge()
            _ = try? await offloaded { rd_kafka_flush(client.handle, 1000) }
            return false
        }
        return true
    }

    /// Fails every message still queued or in flight, so that pending `send` calls return; for shutting down
    /// while Kafka is unreachable.
    public func purge() {
        rd_kafka_purge(client.handle, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
    }

    /// Flushes, then stops the poll thread. The client is destroyed when the last reference goes.
    public func close(flushTimeout: Duration = .seconds(10)) async {
        await flush(timeout: flushTimeout)
        let client = self.client
        pollThread.requestStop { client.wakePoller(consumer: false) }
        await pollThread.join()
    }

    /// The fatal error librdkafka raised on this producer, if any: once set, the producer takes no more messages
    /// and must be replaced.
    public var fatalError: KafkaError? { client.fatalError() }

    /// Raises a fabricated fatal error, as an idempotent producer whose sequence broke would: there is no
    /// practical way to make a broker (or the embedded cluster) cause a real one.
    @_spi(Testing) public func raiseFatalError(reason: String) {
        _ = rd_kafka_test_fatal_error(client.handle, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, reason)
    }

    /// Messages handed to librdkafka and not yet reported on.
    public var queuedCount: Int { Int(rd_kafka_outq_len(client.handle)) }

    /// librdkafka's statistics JSON as it last emitted it; nil unless `statistics.interval.ms` is set.
    public var latestStatistics: String? { statistics.latest.withLock { $0 } }
}

/// Where librdkafka's statistics callback leaves its JSON for `latestStatistics`.
final class ProducerStatistics: Sendable {
    let latest = Mutex<String?>(nil)
}

/// Runs on the poll thread (statistics are served by `rd_kafka_poll`). Returning 0 lets librdkafka free the JSON.
private let statisticsCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int, UnsafeMutableRawPointer?) -> Int32 = { _, json, _, opaque in
    guard let json, let opaque else { return 0 }
    let text = String(cString: json)
    Unmanaged<ProducerStatistics>.fromOpaque(opaque).takeUnretainedValue().latest.withLock { $0 = text }
    return 0
}

private func withKeyBytes<T>(_ key: [UInt8]?, _ body: (UnsafeRawBufferPointer) -> T) -> T {
    guard let key else { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
    return key.withUnsafeBytes(body)
}

private func makeHeaders(_ headers: [KafkaHeader]) -> OpaquePointer {
    let list = rd_kafka_headers_new(headers.count)!
    for header in headers {
        header.value.withUnsafeBytes { value in
            _ = rd_kafka_header_add(list, header.name, -1, value.baseAddress, value.count)
        }
    }
    return list
}

/// librdkafka topic handles by name, created once per topic. Creating one asks for the topic's metadata at once,
/// where producing by name would leave the first messages waiting for librdkafka's one-second topic scan.
///
/// `@unchecked Sendable` is safe because the handles are only added, under the lock, and destroyed in `deinit`,
/// when no sender can hold one any more; librdkafka's topic handles are thread-safe.
private final class TopicHandles: @unchecked Sendable {
    private let client: RdKafkaClient
    private let handles = Mutex<[String: OpaquePointer]>([:])

    init(client: RdKafkaClient) {
        self.client = client
    }

    func handle(for topic: String) -> OpaquePointer {
        handles.withLock { handles in
            if let handle = handles[topic] { return handle }
            let handle = rd_kafka_topic_new(client.handle, topic, nil)!
            handles[topic] = handle
            return handle
        }
    }

    deinit {
        handles.withLock { $0.values.forEach { rd_kafka_topic_destroy($0) } }
    }
}

/// Messages handed to librdkafka by `enqueueBlocking`, whose delivery reports come in one by one.
public final class Deliveries: Sendable {
    fileprivate let pending: PendingDeliveries

    fileprivate init(_ pending: PendingDeliveries) {
        self.pending = pending
    }

    /// Blocks until every report is in or `timeout` has passed; true when every report is in.
    public func waitBlocking(upTo timeout: Duration) -> Bool {
        pending.waitBlocking(upTo: timeout)
    }

    /// The reports that came in since the last call, each with its message's index in the `enqueueBlocking` call.
    public func takeReports() -> [(index: Int, result: Result<DeliveryReport, KafkaError>)] {
        pending.takeReports()
    }
}

/// The results of one `send` call, filled in by delivery reports on the poll thread.
///
/// librdkafka carries one opaque pointer per message. Each points at that message's slot in one buffer per call,
/// and each slot holds this object's address, so a report finds its call and its index without an allocation
/// per message.
private final class PendingDeliveries: Sendable {
    private struct State {
        var results: [Result<DeliveryReport, KafkaError>?]
        var remaining: Int
        var waiter: CheckedContinuation<[Result<DeliveryReport, KafkaError>], Never>?
        /// Indices reported since the last `takeReports`, when the sender takes them one by one.
        var fresh: [Int]?
        /// This object, kept alive for librdkafka until the last report even if the sender lets go of it first.
        var keptAlive: Unmanaged<PendingDeliveries>?
    }

    private let state: Mutex<State>
    /// Signalled with the last report, and again by each wait that takes it, so that it stays open.
    private let allIn = DispatchSemaphore(value: 0)
    /// Memory librdkafka points into: written only in `init`, then only read (by the poll thread),
    /// and freed in `deinit`, which cannot run before the last report because the object keeps itself until then.
    nonisolated(unsafe) private let slots: UnsafeMutablePointer<UnsafeMutableRawPointer?>

    init(count: Int, listsReports: Bool = false) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count, fresh: listsReports ? [] : nil))
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil, count: count)
        let address = Unmanaged.passUnretained(self).toOpaque()
        for index in 0..<count { slots[index] = address }
        if count == 0 {
            allIn.signal()
        } else {
            let kept = Unmanaged.passRetained(self)
            state.withLock { $0.keptAlive = kept }
        }
    }

    deinit {
        slots.deallocate()
    }

    func opaque(for index: Int) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(slots + index)
    }

    /// Resolves a delivery report's opaque pointer to its call and index.
    static func resolve(_ opaque: UnsafeMutableRawPointer) -> (PendingDeliveries, Int) {
        let slot = opaque.assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
        let pending = Unmanaged<PendingDeliveries>.fromOpaque(slot.pointee!).takeUnretainedValue()
        return (pending, slot - pending.slots)
    }

    func record(_ index: Int, _ result: Result<DeliveryReport, KafkaError>) {
        let (finished, kept) = state.withLock { state -> ((CheckedContinuation<[Result<DeliveryReport, KafkaError>], Never>, [Result<DeliveryReport, KafkaError>])?, Unmanaged<PendingDeliveries>?) in
            state.results[index] = result
            state.fresh?.append(index)
            state.remaining -= 1
            guard state.remaining == 0 else { return (nil, nil) }
            allIn.signal()
            defer { state.waiter = nil; state.keptAlive = nil }
            return (state.waiter.map { ($0, state.results.map { $0! }) }, state.keptAlive)
        }
        if let (waiter, results) = finished { waiter.resume(returning: results) }
        // Last: the caller's reference keeps this object alive until the call returns.
        kept?.release()
    }

    func waitBlocking(upTo timeout: Duration) -> Bool {
        if state.withLock({ $0.remaining == 0 }) { return true }
        let (seconds, attoseconds) = timeout.components
        let deadline = DispatchTime.now() + .nanoseconds(Int(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
        guard allIn.wait(timeout: deadline) == .success else { return false }
        allIn.signal()
        return true
    }

    func takeReports() -> [(index: Int, result: Result<DeliveryReport, KafkaError>)] {
        state.withLock { state in
            defer { state.fresh?.removeAll(keepingCapacity: true) }
            return (state.fresh ?? []).map { ($0, state.results[$0]!) }
        }
    }

    func results() async -> [Result<DeliveryReport, KafkaError>] {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> [Result<DeliveryReport, KafkaError>]? in
                if state.remaining == 0 { return state.results.map { $0! } }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// Lets senders wait, without sleeping, for delivery reports to free room in librdkafka's queue.
private final class QueueRoom: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var generation: UInt64 { state.withLock { $0.generation } }

    var hasWaiters: Bool { state.withLock { !$0.waiters.isEmpty } }

    /// Called by the poll thread after it served reports.
    func signal() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.generation &+= 1
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the queue has drained since `generation` was read.
    func wait(after generation: UInt64) async {
        await withCheckedContinuation { continuation in
            let served = state.withLock { state in
                if state.generation != generation { return true }
                state.waiters.append(continuation)
                return false
            }
            if served { continuation.resume() }
        }
    }
}

/// librdkafka calls this on the poll thread, once per message, with the opaque passed at produce time.
private let deliveryReportCallback: @convention(c) (
    OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?
) -> Void = { _, message, _ in
    guard let message, let opaque = message.pointee._private else { return }
    let (pending, index) = PendingDeliveries.resolve(opaque)
    let code = message.pointee.err
    let result: Result<DeliveryReport, KafkaError> = code == RD_KAFKA_RESP_ERR_NO_ERROR
        ? .success(DeliveryReport(partition: message.pointee.partition, offset: message.pointee.offset))
        : .failure(.from(code, operation: "deliver to \(String(cString: rd_kafka_topic_name(message.pointee.rkt)))"))
    pending.record(index, result)
}
