import DomainEvents
import Foundation
import GRDB
import Kafka
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Consumes a service's topics in batches: each batch is one write transaction, then the relay is woken and
/// the offsets are committed. On graceful shutdown it stops taking batches, finishes and commits the batch in
/// hand, and leaves the group.
public final class ConsumerLoop<Handler: EventHandler>: Service {
    /// What this member owns and has done, for `GET /status` and the metrics.
    public let status = ConsumerStatus()
    private let processor: BatchProcessor<Handler>
    private let database: DatabasePool
    private let configuration: KafkaConfiguration
    private let topics: [String]
    private let relay: OutboxRelay
    private let batching: ConsumerBatching
    private let batchApplied: Wakeup?
    private let logger: Logger

    public init(
        processor: BatchProcessor<Handler>, database: DatabasePool, configuration: KafkaConfiguration,
        topics: [Topic], relay: OutboxRelay, batching: ConsumerBatching = ConsumerBatching(), batchApplied: Wakeup? = nil,
        logger: Logger
    ) {
        self.batchApplied = batchApplied
        self.processor = processor
        self.database = database
        self.configuration = configuration
        self.topics = topics.map(\.name)
        self.relay = relay
        self.batching = batching
        self.logger = logger
    }

    public func run() async throws {
        // The database, not Kafka, says where each partition resumes: it records the next offset in the very
        // transaction that applies a batch, so a database restored from a copy (or one whose last commits a power
        // loss took) re-reads what it lost, and derived event IDs make what it re-emits identical.
        let database = self.database, group = processor.group, logger = self.logger
        let startingOffsets: StartingOffsets = { _ in
            do {
                return try database.read { db in try Inbox.nextOffsets(group: group, in: db) }
            } catch {
                logger.error("cannot read the stored positions; resuming at Kafka's committed offsets: \(error)")
                return nil
            }
        }
        let members = MemberRecords(databasePath: database.path)
        do { try members.markAlive() } catch { logger.warning("\(error)") }
        let embeddedServers = configuration.isEmbeddedCluster ? configuration.bootstrapServers : nil
        if let servers = embeddedServers {
            _ = await onSpareThread { members.removeDeadMembers(bootstrapServers: servers, logger: logger) }
        }
        let consumer = try KafkaConsumer(
            configuration: configuration, group: processor.group, topics: topics, batching: batching,
            startingOffsets: startingOffsets, logger: logger)
        logger.info("consuming \(topics) as group \(processor.group)")
        status.attach(consumer)
        let status = self.status, instance = configuration.properties["client.id"] ?? processor.source
        let watcher = Task {
            for await event in consumer.events {
                status.note(event)
                let member: String
                switch event {
                case .joined(let answer):
                    member = answer.member
                    if let servers = embeddedServers, members.leaderIsDead(answer) {
                        await onSpareThread { members.removeDeadLeader(answer, of: group, bootstrapServers: servers, logger: logger) }
                    }
                case .assigned:
                    guard let assigned = consumer.memberID() else { continue }
                    member = assigned
                default:
                    continue
                }
                do { try members.hold(memberID: member, group: group, instance: instance) } catch { logger.warning("\(error)") }
            }
        }
        defer { watcher.cancel() }
        var failures = 0
        for try await batch in consumer.batches.cancelOnGracefulShutdown() {
            let started = ContinuousClock.now
            do {
                let outcome = try await processor.process(batch.messages, logRestarts: batch.logRestarts, in: database)
                ConsumerMetrics.shared.record(outcome.tally, messages: batch.messages.count, transaction: .now - started)
                status.batchDone(outcome)
                if outcome.emitted + outcome.deadLettered > 0 { relay.wake() }
                if outcome.applied > 0 { batchApplied?.signal() }
                failures = 0
            } catch {
                // The database refused the batch (disk full, locked too long): nothing of it was applied.
                failures += 1
                status.batchFailed()
                logger.error("batch of \(batch.messages.count) failed, will retry: \(error)")
                try await consumer.release(batch)
                // Capped before shifting: 1 << 64 is 0 in Swift, which would retry a long outage without pause.
                try await Task.sleep(for: .milliseconds(100) * min(1 << min(failures, 6), 50))
                continue
            }
            do {
                try await consumer.commit(batch)
            } catch {
                // The database already records what was applied, so a redelivery is skipped, not applied again.
                logger.warning("offset commit failed: \(error)")
            }
        }
        await consumer.close()
        members.release()
        status.detach()
        logger.info("consumer stopped")
    }
}

/// A consumer group member as `GET /status` shows it: the partitions it owns right now (the embedded cluster
/// cannot describe groups, so ownership comes from the members), how often it was rebalanced, its last batch.
public final class ConsumerStatus: Sendable {
    private struct State {
        var consumer: KafkaConsumer?
        var assigned: [TopicPartition] = []
        var lastBatchAt: String?
        var failedBatches = 0
        var handled = HandledCounts()
    }

    private let state = Mutex(State())
    private let rebalances: Counter
    private let batchFailures: Counter
    private let fellOffLog: Counter
    private let gaps: Counter
    private let logRestarts: Counter
    private let assignedGauge: Gauge

    public init() {
        ServiceMetrics.bootstrap()
        rebalances = Counter(label: "emporium_consumer_rebalances_total")
        batchFailures = Counter(label: "emporium_consumer_batch_failures_total")
        fellOffLog = Counter(label: "emporium_consumer_offsets_fell_off_log_total")
        gaps = Counter(label: "emporium_consumer_offset_gaps_total")
        logRestarts = Counter(label: "emporium_consumer_log_restarts_total")
        assignedGauge = Gauge(label: "emporium_consumer_assigned_partitions")
    }

    func attach(_ consumer: KafkaConsumer) { state.withLock { $0.consumer = consumer } }

    func detach() {
        state.withLock { $0 = State(lastBatchAt: $0.lastBatchAt, failedBatches: $0.failedBatches, handled: $0.handled) }
        assignedGauge.record(0)
    }

    func batchDone(_ outcome: BatchOutcome) {
        let now = Timestamp.now()
        state.withLock { state in
            state.lastBatchAt = now
            state.handled.messages += outcome.applied + outcome.skipped + outcome.duplicates + outcome.alreadyApplied + outcome.deadLettered
            state.handled.applied += outcome.applied
            state.handled.duplicates += outcome.duplicates + outcome.alreadyApplied
            state.handled.deadLettered += outcome.deadLettered
        }
    }

    func batchFailed() {
        batchFailures.increment()
        state.withLock { $0.failedBatches += 1 }
    }

    func note(_ event: KafkaConsumerEvent) {
        switch event {
        case .assigned(let partitions):
            rebalances.increment()
            let count = state.withLock { state in
                state.assigned = (Set(state.assigned).union(partitions)).sorted()
                return state.assigned.count
            }
            assignedGauge.record(count)
        case .revoked(let partitions):
            let count = state.withLock { state in
                state.assigned = Set(state.assigned).subtracting(partitions).sorted()
                return state.assigned.count
            }
            assignedGauge.record(count)
        case .offsetFellOffLog:
            fellOffLog.increment()
        case .offsetGap:
            gaps.increment()
        case .logRestarted:
            logRestarts.increment()
            state.withLock { $0.handled.logRestarts += 1 }
        case .error, .joined:
            break
        }
    }

    public var assigned: [TopicPartition] { state.withLock { $0.assigned } }
    public var memberID: String? { state.withLock { $0.consumer }?.memberID() }
    public var lastBatchAt: String? { state.withLock { $0.lastBatchAt } }
    /// Batches the database refused (and that were given back to be read again).
    public var failedBatches: Int { state.withLock { $0.failedBatches } }
    /// What this member did with the events it was handed since it started.
    public var handled: HandledCounts { state.withLock { $0.handled } }

    /// Per owned partition, the messages not yet handed over (see `KafkaConsumer.lag()`).
    public func lag() -> [TopicPartition: Int64] {
        state.withLock { $0.consumer }?.lag() ?? [:]
    }
}

/// What one member did with the messages it was handed since it started: all of them (including types its
/// service ignores), the events it applied, the redeliveries it recognised and skipped, the poison it dead-lettered.
public struct HandledCounts: Codable, Sendable, Equatable {
    public var messages = 0
    public var applied = 0
    public var duplicates = 0
    public var deadLettered = 0
    /// Partitions whose log turned out shorter than this member's position, and were read again from its start.
    public var logRestarts = 0

    public init() {}

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        messages = try container.decode(Int.self, forKey: .messages)
        applied = try container.decode(Int.self, forKey: .applied)
        duplicates = try container.decode(Int.self, forKey: .duplicates)
        deadLettered = try container.decode(Int.self, forKey: .deadLettered)
        // Absent from the status of an instance that predates it.
        logRestarts = try container.decodeIfPresent(Int.self, forKey: .logRestarts) ?? 0
    }
}
