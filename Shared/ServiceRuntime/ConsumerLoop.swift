import DomainEvents
import GRDB
import Kafka
import Logging
import ServiceLifecycle

/// Consumes a service's topics in batches: each batch is one write transaction, then the relay is woken and
/// the offsets are committed. On graceful shutdown it stops taking batches, finishes and commits the batch in
/// hand, and leaves the group.
public final class ConsumerLoop<Handler: EventHandler>: Service {
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
        let consumer = try KafkaConsumer(
            configuration: configuration, group: processor.group, topics: topics, batching: batching, logger: logger)
        logger.info("consuming \(topics) as group \(processor.group)")
        var failures = 0
        for try await batch in consumer.batches.cancelOnGracefulShutdown() {
            do {
                let outcome = try await processor.process(batch.messages, in: database)
                if outcome.emitted + outcome.deadLettered > 0 { relay.wake() }
                if outcome.applied > 0 { batchApplied?.signal() }
                failures = 0
            } catch {
                // The database refused the batch (disk full, locked too long): nothing of it was applied.
                failures += 1
                logger.error("batch of \(batch.messages.count) failed, will retry: \(error)")
                try await consumer.release(batch)
                try await Task.sleep(for: .milliseconds(100) * min(1 << failures, 50))
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
        logger.info("consumer stopped")
    }
}
