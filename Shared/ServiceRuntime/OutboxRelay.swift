import DomainEvents
import Foundation
import GRDB
@_spi(Testing) import Kafka
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Publishes outbox rows in the order they were written, through the idempotent producer, and deletes each
/// row only after its delivery report. Where several instances share a database, only the holder of the
/// relay lease runs; another takes over as soon as the holder's process dies.
///
/// The relay's producer never times a message out (`message.timeout.ms=0`): while a partition's broker is
/// unreachable its messages wait inside librdkafka, which retries, and the relay goes on publishing the other
/// partitions (`InFlightRows`). A failure that may pass starts the relay again from the oldest row left, with
/// capped exponential backoff.
public final class OutboxRelay: Service {
    private let database: DatabasePool
    private let configuration: KafkaConfiguration
    private let leasePath: String
    private let databasePath: String
    private let logger: Logger
    private let wakeup = Wakeup()
    private let batchSize: Int
    /// Rows written by other processes sharing the database are noticed at this interval; this process's own
    /// writes wake the relay at once.
    private let foreignWriteCheck: Duration
    private let stopping = Atomic<Bool>(false)
    private let delivered = Atomic<Int>(0)
    private let created = Atomic<Int>(0)
    private let leaseHeld = Atomic<Bool>(false)
    private let relayed: Counter
    private let parkedCounter: Counter
    /// The producer in use, so that shutdown can purge what it holds.
    private let producer = Mutex<KafkaProducer?>(nil)
    /// From handing a batch to the producer until its last delivery report: what a hop waits on Kafka.
    private let deliveryLatency: Metrics.Timer
    /// Lanes (a topic and a slot of its keys) whose rows wait while the others go on (`InFlightRows`).
    private let heldLanes: Gauge
    /// How long a batch is waited for before the rows behind it are sent: far longer than a healthy broker takes.
    private let patience = Duration.milliseconds(100)
    /// Rows in flight at most, so that a broker away for long does not pull the whole outbox into memory.
    private var inFlightLimit: Int { batchSize * 10 }
    /// Rows of one partition in flight at most: a tenth of the whole, so that several partitions without a leader
    /// cannot take all the room.
    private var laneLimit: Int { max(1, inFlightLimit / 10) }

    public init(
        database: DatabasePool, databasePath: String, configuration: KafkaConfiguration, logger: Logger,
        batchSize: Int = 1_000, foreignWriteCheck: Duration = .milliseconds(20)
    ) {
        self.database = database
        self.configuration = configuration
        leasePath = databasePath + ".relay-lease"
        self.databasePath = databasePath
        self.logger = logger
        self.batchSize = batchSize
        self.foreignWriteCheck = foreignWriteCheck
        ServiceMetrics.bootstrap()
        relayed = Counter(label: "emporium_outbox_relayed_total")
        parkedCounter = Counter(label: "emporium_outbox_parked_total")
        deliveryLatency = Metrics.Timer(label: "emporium_relay_delivery_duration_seconds")
        heldLanes = Gauge(label: "emporium_relay_held_lanes")
    }

    /// Tells the relay that rows were written.
    public func wake() {
        wakeup.signal()
    }

    /// Rows delivered since start.
    public var deliveredCount: Int { delivered.load(ordering: .relaxed) }

    /// Producers this relay has created: more than one means one was replaced after a fatal error.
    public var producersCreated: Int { created.load(ordering: .relaxed) }

    /// Makes the producer in use raise a fatal error, for tests of its replacement.
    @_spi(Testing) public func raiseFatalErrorInProducer(reason: String) -> Bool {
        guard let producer = producer.withLock({ $0 }) else { return false }
        producer.raiseFatalError(reason: reason)
        return true
    }

    /// Whether this process holds the relay lease, and so is the one publishing the shared outbox.
    public var holdsLease: Bool { leaseHeld.load(ordering: .relaxed) }

    public func run() async throws {
        let leasePath = self.leasePath
        let logger = self.logger
        guard let lease = try await cancelWhenGracefulShutdown({ try await Lease.acquire(at: leasePath, logger: logger) })
        else { return }
        leaseHeld.store(true, ordering: .relaxed)
        defer {
            leaseHeld.store(false, ordering: .relaxed)
            lease.release()
        }
        logger.info("relay lease acquired; publishing the outbox")

        await withGracefulShutdownHandler {
            await relayUntilStopped()
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .releasing)
            self.wakeup.signal()
            // If Kafka is unreachable the batch in flight cannot finish: give it a few seconds, then let it fail.
            Task {
                try? await Task.sleep(for: .seconds(3))
                self.producer.withLock { $0 }?.purge()
            }
        }
        let left = try await database.read(Outbox.pendingCount)
        logger.info("relay stopped; \(left) rows left in the outbox")
    }

    /// Relays through one producer at a time: one that raises a fatal error is closed and replaced.
    private func relayUntilStopped() async {
        var properties = configuration
        properties.properties["producer.message.timeout.ms"] = "0"
        // The relay waits for each batch's delivery reports, so lingering adds straight to every hop's latency:
        // at 200 orders/s, 1 ms instead of 5 took the shop's p50 from about 100 to about 80 ms at the same throughput.
        if properties.properties["linger.ms"] == nil && properties.properties["producer.linger.ms"] == nil {
            properties.properties["producer.linger.ms"] = "1"
        }
        var failures = 0
        while !stopping.load(ordering: .acquiring) {
            let producer: KafkaProducer
            do {
                producer = try KafkaProducer(configuration: properties, logger: logger)
            } catch {
                failures += 1
                logger.error("cannot create the relay's producer (attempt \(failures)): \(error)")
                try? await Task.sleep(for: .milliseconds(100) * min(1 << min(failures, 6), 50))
                continue
            }
            self.producer.withLock { $0 = producer }
            created.add(1, ordering: .relaxed)
            // On a thread of its own, blocking: the outbox read, the produce, the wait for the reports and the
            // delete then wake no thread but this one (GRDB runs synchronous accesses on the calling thread).
            let fatal = await withTaskCancellationHandler {
                await onSpareThread { self.relay(through: producer) }
            } onCancel: {
                self.stopping.store(true, ordering: .releasing)
                self.wakeup.signal()
            }
            let reason = producer.fatalError.map { "\($0)" } ?? "unknown"
            await producer.close(flushTimeout: .seconds(3))
            self.producer.withLock { $0 = nil }
            guard fatal else { return }
            logger.error("the relay's producer raised a fatal error; replacing it: \(reason)")
        }
    }

    /// Publishes until stopped (false) or until the producer is unusable (true), blocking the calling thread.
    private func relay(through producer: KafkaProducer) -> Bool {
        var failures = 0
        var lanes = Lanes(producer: producer)
        var inFlight = InFlightRows(laneLimit: laneLimit, laneOf: lanes.lane(of:))
        while true {
            do {
                if try publish(through: producer, inFlight: &inFlight, lanes: lanes) {
                    failures = 0
                    continue
                }
            } catch let error as KafkaError where error.isFatal {
                return true
            } catch where producer.fatalError != nil {
                // A fatal error fails the queued messages as purged, not as fatal: the producer says which it was.
                return true
            } catch {
                // Start again from the oldest row: rows still in flight may go out twice, and consumers drop the copy.
                lanes = Lanes(producer: producer)
                inFlight = InFlightRows(laneLimit: laneLimit, laneOf: lanes.lane(of:))
                failures += 1
                let backoff = Duration.milliseconds(100) * min(1 << min(failures, 6), 50)
                logger.error("publishing the outbox failed (attempt \(failures)); retrying in \(backoff): \(error)")
                pause(for: backoff)
                if stopping.load(ordering: .acquiring) { return false }
                continue
            }
            if stopping.load(ordering: .acquiring) {
                // Shutdown purges what Kafka has not taken after a few seconds, which reports every row in flight.
                inFlight.waitForAll(until: .now + .seconds(5))
                do {
                    try record(inFlight.settle())
                } catch {
                    logger.warning("could not record the last deliveries; those rows will be sent again: \(error)")
                }
                return false
            }
            wakeup.waitBlocking(upTo: foreignWriteCheck)
        }
    }

    /// Sleeps for `duration` unless the relay is stopping: a write that wakes the relay does not cut it short.
    private func pause(for duration: Duration) {
        let end = ContinuousClock.now + duration
        while !stopping.load(ordering: .acquiring) {
            let left = end - ContinuousClock.now
            guard left > .zero else { return }
            wakeup.waitBlocking(upTo: min(left, .milliseconds(100)))
        }
    }

    /// Sends the rows after those already in flight, then settles every row whose delivery report is in: a
    /// delivered row is deleted, and a row Kafka can never take as it is (too large, invalid) is parked with
    /// the reason in `parkedOutboxRow`, where `emporium dlq parked` shows it, so that nothing behind it waits.
    /// Returns false when there was nothing to send or settle.
    ///
    /// Usually a batch's reports are all in within milliseconds and it is settled at once. A batch that takes
    /// longer (its partition's broker is away) is not waited for: the rows behind it are sent, up to
    /// `inFlightLimit` in all and `laneLimit` per lane, so one partition's trouble holds back only that
    /// partition's keys, however long it lasts (`InFlightRows`).
    private func publish(through producer: KafkaProducer, inFlight: inout InFlightRows, lanes: Lanes) throws -> Bool {
        var sent = false
        if inFlight.count < inFlightLimit {
            // Held lanes with room again first: their rows are older than any new row of theirs.
            var rows = try resumeHeldLanes(&inFlight, lanes: lanes)
            let after = inFlight.lastRead
            rows += inFlight.admit(try database.read { db in try Outbox.oldest(batchSize, after: after, in: db) })
            if !rows.isEmpty {
                // Nothing leaves before the transactions that wrote it are on disk: a power loss must not take back
                // an event consumers have seen (a re-run could decide differently under the same event ID).
                try ServiceDatabase.syncCommitted(at: databasePath)
                let deliveries = producer.enqueueBlocking(rows.map(\.message))
                inFlight.add(rows, deliveries)
                _ = deliveries.waitBlocking(upTo: patience)
                sent = true
            }
        }
        let held = inFlight.holds.count
        let settled = inFlight.settle()
        try record(settled)
        for (lane, error) in settled.topicFailures {
            logger.critical("Kafka refuses \(lane.topic): rows of \(lane) wait and are tried again later; the other topics go on: \(error)")
        }
        if inFlight.holds.count > held { logger.warning("\(inFlight.holds.count) outbox lanes held back; the others go on") }
        heldLanes.record(inFlight.holds.count)
        if let passing = settled.passing { throw passing }
        return sent || !settled.isEmpty
    }

    /// Reads again, for each held lane that may go on, its rows from where it stopped, and returns those to send.
    /// A lane's rows sit among other lanes' (mostly in flight), so at most `batchSize * 5` rows are scanned per
    /// lane and call; the hold moves past what was scanned.
    private func resumeHeldLanes(_ inFlight: inout InFlightRows, lanes: Lanes) throws -> [OutboxRow] {
        var rows: [OutboxRow] = []
        for (lane, from) in inFlight.resumable() {
            let through = inFlight.lastRead
            let scanned = try database.read { [batchSize] db in try Outbox.rows(from: from, through: through, limit: batchSize * 5, in: db) }
            let end = scanned.count == batchSize * 5 ? scanned.last!.id! : through
            rows += inFlight.resume(lane, rows: scanned.filter { lanes.lane(of: $0) == lane }, through: end)
        }
        return rows
    }

    /// Deletes the settled rows and parks the refused ones, in one transaction.
    private func record(_ settled: InFlightRows.Settled) throws {
        for duration in settled.completed { deliveryLatency.recordNanoseconds(duration.nanoseconds) }
        guard !settled.done.isEmpty else { return }
        try database.write { db in
            _ = try OutboxRow.deleteAll(db, keys: settled.done)
            for row in settled.parked { try row.insert(db) }
        }
        let deliveredCount = settled.done.count - settled.parked.count
        delivered.add(deliveredCount, ordering: .relaxed)
        relayed.increment(by: deliveredCount)
        for row in settled.parked {
            logger.critical("parked an outbox row Kafka cannot take: \(row.topic) key \(row.key.map { String(decoding: $0, as: UTF8.self) } ?? "none"): \(row.reason)")
        }
        if !settled.parked.isEmpty { parkedCounter.increment(by: settled.parked.count) }
    }
}

/// The partition each row goes to, for counting rows in flight per partition (`InFlightRows`): the key's murmur2
/// over the topic's partition count, as the producer places it. A topic's count is asked once, on the relay's own
/// thread, and kept for as long as the rows in flight are counted this way: a row must stay in the lane it was
/// counted and held in. A topic no broker could describe then has one lane for all its rows; the relay asks
/// again when it starts over.
final class Lanes {
    private let producer: KafkaProducer
    private var partitions: [String: Int32?] = [:]

    init(producer: KafkaProducer) {
        self.producer = producer
    }

    func lane(of row: OutboxRow) -> InFlightRows.Lane {
        InFlightRows.Lane(topic: row.topic, partition: row.key.flatMap { key in
            partitionCount(of: row.topic).map { Murmur2.partition(for: Array(key), partitionCount: $0) }
        } ?? -1)
    }

    private func partitionCount(of topic: String) -> Int32? {
        if let known = partitions[topic] { return known }
        let count = producer.partitionCount(of: topic)
        partitions[topic] = count
        return count
    }
}

/// A wake-up call that is never lost: a signal with no one waiting is kept for the next wait. One waiter at a
/// time, from a task (`wait`) or from a thread of its own (`waitBlocking`).
public final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
        var threadWaiting = false
    }

    private let state = Mutex(State())
    private let threadWakeup = DispatchSemaphore(value: 0)

    public init() {}

    public func signal() {
        let (waiter, thread) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Bool) in
            if let waiter = state.waiter {
                state.waiter = nil
                return (waiter, false)
            }
            if state.threadWaiting {
                state.threadWaiting = false
                return (nil, true)
            }
            state.pending = true
            return (nil, false)
        }
        waiter?.resume()
        if thread { threadWakeup.signal() }
    }

    /// Returns at the next signal, or after `timeout`.
    public func wait(upTo timeout: Duration) async {
        let timer = Task { [self] in
            try await Task.sleep(for: timeout)
            signal()
        }
        await withCheckedContinuation { continuation in
            let signalled = state.withLock { state in
                if state.pending {
                    state.pending = false
                    return true
                }
                state.waiter = continuation
                return false
            }
            if signalled { continuation.resume() }
        }
        timer.cancel()
    }

    /// The same, blocking the calling thread.
    public func waitBlocking(upTo timeout: Duration) {
        let signalled = state.withLock { state in
            if state.pending {
                state.pending = false
                return true
            }
            state.threadWaiting = true
            return false
        }
        guard !signalled, threadWakeup.wait(timeout: .now() + .nanoseconds(Int(timeout.nanoseconds))) == .timedOut else { return }
        let unsignalled = state.withLock { state in
            defer { state.threadWaiting = false }
            return state.threadWaiting
        }
        // A signal that came between the timeout and the lock has signalled the semaphore: take it back.
        if !unsignalled { threadWakeup.wait() }
    }
}
