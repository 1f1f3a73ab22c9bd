import DomainEvents
import Foundation
import GRDB
import Kafka
import Logging
import ServiceLifecycle

/// Runs one service: its database, its outbox relay, its consumer loop and any services of its own (an HTTP
/// server), as one `ServiceGroup`. On SIGTERM or SIGINT the group shuts them down in reverse order: the HTTP
/// server stops taking requests, the consumer finishes and commits its batch, the relay flushes the outbox.
public struct ServiceHost<Handler: EventHandler> {
    public let settings: RuntimeSettings
    public let handler: Handler
    public let topics: [Topic]
    public let durability: ServiceDatabase.Durability
    public let migrations: @Sendable (inout DatabaseMigrator) -> Void
    /// What the service forgets of its own tables, beside the runtime's (`RetentionRule.runtime`).
    public let retention: [RetentionRule]

    public init(
        settings: RuntimeSettings, handler: Handler, topics: [Topic], durability: ServiceDatabase.Durability = .replayable,
        migrations: @escaping @Sendable (inout DatabaseMigrator) -> Void = { _ in }, retention: [RetentionRule] = []
    ) {
        self.retention = retention
        self.settings = settings
        self.handler = handler
        self.topics = topics
        self.durability = durability
        self.migrations = migrations
    }

    /// Opens the database and runs until shutdown. `services` adds the service's own parts.
    public func run(services: (ServiceContext) throws -> [any Service] = { _ in [] }) async throws {
        LoggingSystem.bootstrap { [settings] label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = settings.logLevel
            handler.metadata["instance"] = "\(settings.instanceID)"
            return handler
        }
        let logger = Logger(label: settings.service)
        ServiceMetrics.bootstrap()
        let database = try ServiceDatabase.open(at: settings.databasePath, durability: durability, migrations: migrations)
        // Its sequence counters and positions are set only when a rebuild ends: started before, it would publish
        // sequences that go backwards.
        if try await database.read(LogRebuild.wasInterrupted) {
            throw LogRebuild.Refusal.unfinished(service: settings.service, database: settings.databasePath)
        }
        if !settings.kafka.isEmbeddedCluster {
            try await KafkaAdmin(configuration: settings.kafka).createTopics(Topic.allCases.flatMap { topic in
                [topic.name, topic.deadLetterName].map { TopicSpec(name: $0, partitions: 12, replicationFactor: 3) }
            })
        }
        let relay = OutboxRelay(database: database, databasePath: settings.databasePath, configuration: settings.kafka, logger: logger)
        let batchApplied = Wakeup()
        let consumer = ConsumerLoop(
            processor: BatchProcessor(handler: handler, group: settings.group, source: settings.service, logger: logger),
            database: database, configuration: settings.kafka, topics: topics, relay: relay, batchApplied: batchApplied, logger: logger)
        let context = ServiceContext(
            settings: settings, database: database, relay: relay, consumer: consumer.status, batchApplied: batchApplied, logger: logger)
        let pruner = Pruner(database: database, rules: RetentionRule.runtime + retention, retention: settings.retention, logger: logger)
        let group = ServiceGroup(
            services: [relay, consumer, pruner] + (try services(context)),
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        logger.info("\(settings.service) starting", metadata: [
            "database": "\(settings.databasePath)", "group": "\(settings.group)",
            "kafka": "\(settings.kafka.bootstrapServers ?? "")",
        ])
        let record = try InstanceRecord(
            service: settings.service, instance: settings.instanceID, pid: getpid(), url: "http://127.0.0.1:\(settings.port)"
        ).write(varDirectory: settings.varDirectory)
        defer { try? FileManager.default.removeItem(atPath: record) }
        try await group.run()
        logger.info("\(settings.service) stopped")
    }
}

/// What a service's own parts get from the host.
public struct ServiceContext: Sendable {
    public let settings: RuntimeSettings
    public let database: DatabasePool
    /// Wake it after writing to the outbox outside the consumer loop (an HTTP request).
    public let relay: OutboxRelay
    public let consumer: ConsumerStatus
    /// Signalled after each batch that applied at least one event.
    public let batchApplied: Wakeup
    public let logger: Logger
}
