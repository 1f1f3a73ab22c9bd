import DomainEvents
import Foundation
import GRDB
import Kafka
import Logging
import ServiceLifecycle
import ServiceRuntime
import Synchronization
@_exported import TestSupport

/// A handler that counts its effect per order and confirms each order; it fails forever on one customer, after
/// writing its effect, so that a test sees whether a failure's writes are undone.
struct ConfirmingHandler: EventHandler {
    static let failingCustomer = "customer-who-breaks-the-handler"
    let handledTypes: Set<EventType> = [.orderPlaced]

    func handle(_ envelope: Envelope, in db: Database) throws -> [DomainEvent] {
        guard case .orderPlaced(let order) = envelope.event else { return [] }
        try db.execute(sql: """
            INSERT INTO effect (orderId, count) VALUES (?, 1) ON CONFLICT (orderId) DO UPDATE SET count = count + 1
            """, arguments: [order.orderId])
        if order.customerId == Self.failingCustomer { throw HandlerFailure() }
        return [.orderConfirmed(OrderConfirmed(orderId: order.orderId, customerId: order.customerId, totalCents: order.totalCents))]
    }

    static func migrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("effect") { db in
            try db.create(table: "effect") { table in
                table.primaryKey("orderId", .text)
                table.column("count", .integer).notNull()
            }
        }
    }

    struct HandlerFailure: Error, CustomStringConvertible {
        var description: String { "the test handler always fails for this customer" }
    }
}

/// An in-process embedded cluster with Emporium's topics, and a database in a temporary directory.
struct RuntimeFixture {
    let cluster: EmbeddedCluster
    let configuration: KafkaConfiguration
    let directory: URL
    let logger = Logger(label: "test")

    init(partitions: Int32 = 3) throws {
        cluster = try EmbeddedCluster(brokers: 3)
        for name in Topic.allNames {
            try cluster.createTopic(TopicSpec(name: name, partitions: partitions, replicationFactor: 3))
        }
        configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, KafkaConfiguration.embeddedClusterTuning)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-runtime-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    var databasePath: String { directory.appendingPathComponent("service.sqlite").path }

    func openDatabase() throws -> DatabasePool {
        try ServiceDatabase.open(at: databasePath, migrations: ConfirmingHandler.migrations)
    }

    func processor(group: String = "test-group") -> BatchProcessor<ConfirmingHandler> {
        BatchProcessor(handler: ConfirmingHandler(), group: group, source: "test-service",
                       retry: RetryPolicy(attempts: 3, initialBackoff: .milliseconds(1)), logger: logger)
    }

    /// A valid `OrderPlaced` for order `n` of one of `customers` customers.
    static func orderPlaced(_ n: Int, customers: Int = 10, eventId: String = UUID().uuidString.lowercased()) throws -> OutgoingMessage {
        let customer = "customer-\(n % customers)"
        let event = DomainEvent.orderPlaced(OrderPlaced(
            orderId: "order-\(n)", customerId: customer,
            lines: [OrderLine(productId: "product-1", quantity: 1, unitPriceCents: 500)], totalCents: 500, currency: "EUR"))
        let envelope = Envelope(eventId: eventId, key: customer, sequence: Int64(n + 1), correlationId: "order-\(n)",
                                causationId: nil, occurredAt: Timestamp.now(), source: "test", event: event)
        return try Wire.message(for: envelope, traceparent: TraceContext.newTrace().traceparent)
    }

    func produce(_ messages: [OutgoingMessage]) async throws {
        let producer = try KafkaProducer(configuration: configuration)
        try await producer.deliver(messages)
        try await producer.close(within: .seconds(30))
    }

    /// Reads `topic` from the beginning in a fresh group until `count` messages arrived.
    func read(_ topic: String, count: Int, timeout: Duration = .seconds(60)) async throws -> [ConsumedMessage] {
        let consumer = try KafkaConsumer(configuration: configuration, group: "reader-\(UUID())", topics: [topic])
        do {
            let messages = try await within(timeout, "\(count) messages from \(topic)") {
                var seen: [ConsumedMessage] = []
                for try await batch in consumer.batches {
                    seen += batch.messages
                    try await consumer.commit(batch)
                    if seen.count >= count { break }
                }
                return seen
            }
            try await consumer.close(within: .seconds(30))
            return messages
        } catch {
            try? await consumer.close(within: .seconds(30))
            throw error
        }
    }

    func effectCounts(in database: DatabasePool) async throws -> [String: Int] {
        try await database.read { db in
            Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT orderId, count FROM effect").map { ($0["orderId"], $0["count"]) })
        }
    }
}

/// A relay running in a service group of its own, as a service process would run it.
struct RunningRelay {
    let relay: OutboxRelay
    let group: ServiceGroup
    let task: Task<Void, Error>

    init(database: DatabasePool, path: String, configuration: KafkaConfiguration, batchSize: Int = 1_000) {
        relay = OutboxRelay(database: database, databasePath: path, configuration: configuration, logger: Logger(label: "relay"),
                            batchSize: batchSize)
        let group = ServiceGroup(services: [relay], gracefulShutdownSignals: [], logger: Logger(label: "relay-group"))
        self.group = group
        task = Task { try await group.run() }
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        let task = self.task
        try await within(.seconds(30), "the relay stops") { try await task.value }
    }
}

/// A consumer loop and its relay in a service group of their own, as a service process runs them.
struct RunningLoop {
    let loop: ConsumerLoop<ConfirmingHandler>
    let relay: OutboxRelay
    let group: ServiceGroup
    let task: Task<Void, Error>

    init(fixture: RuntimeFixture, database: DatabasePool) {
        relay = OutboxRelay(database: database, databasePath: fixture.databasePath, configuration: fixture.configuration,
                            logger: fixture.logger)
        loop = ConsumerLoop(processor: fixture.processor(), database: database, configuration: fixture.configuration,
                            topics: [.orders], relay: relay, logger: fixture.logger)
        let group = ServiceGroup(services: [relay, loop], gracefulShutdownSignals: [], logger: fixture.logger)
        self.group = group
        task = Task { try await group.run() }
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        let task = self.task
        try await within(.seconds(30), "the loop stops") { try await task.value }
    }
}
