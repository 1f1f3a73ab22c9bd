import ArgumentParser
import Catalogue
import DomainEvents
import Foundation
import GRDB
import Kafka
import Logging
import ServiceLifecycle
import ServiceRuntime

struct RuntimeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runtime",
        abstract: "Consume, write state and relay one event per input through the service runtime, end to end.",
        discussion: """
        Prints events/s end to end next to two baselines from the same run: raw SQLite batch inserts
        (500-row transactions of outbox-sized rows) and the Kafka layer's produce rate.
        """
    )

    @Option(help: "Events to push through.")
    var events: Int = 50_000

    @Option(help: "Seed for the generated events.")
    var seed: UInt64 = 7

    @Flag(help: "Print the figures as one JSON object.")
    var json = false

    func validate() throws {
        guard events > 0 else { throw ValidationError("--events must be positive") }
    }

    func run() async throws {
        let logger = Logger(label: "emporium.bench")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-runtime-bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cluster = try await ClusterProcess.start(brokers: 3, partitions: 12, topics: Topic.allNames)
        defer { cluster.stop() }
        let configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, KafkaConfiguration.embeddedClusterTuning)

        var random = SeededRandom(seed: seed)
        let input = try (0...events).map { n in try Self.orderPlaced(n, customer: "customer-\(random.next() % 5_000)") }
        let producer = try KafkaProducer(configuration: configuration)

        let sqliteSeconds = try secondsTaken { try Self.rawInserts(count: events, sample: input[0], at: directory.appendingPathComponent("raw.sqlite").path) }

        logger.info("running the runtime over them")
        let path = directory.appendingPathComponent("service.sqlite").path
        let database = try ServiceDatabase.open(at: path)
        let relay = OutboxRelay(database: database, databasePath: path, configuration: configuration, logger: logger)
        let loop = ConsumerLoop(
            processor: BatchProcessor(handler: PassThrough(), group: "bench-runtime", source: "bench", logger: logger),
            database: database, configuration: configuration, topics: [.orders], relay: relay, logger: logger)
        let group = ServiceGroup(services: [relay, loop], gracefulShutdownSignals: [], logger: logger)
        let running = Task { try await group.run() }
        // One event first, so that the group's join is behind us before the clock starts.
        _ = try await producer.send(input[0])
        while relay.deliveredCount < 1 { try await Task.sleep(for: .milliseconds(5)) }
        logger.info("pushing \(events) OrderPlaced events through")
        var produceSeconds = 0.0
        let endToEndSeconds = try await secondsTaken {
            produceSeconds = try await secondsTaken {
                for result in await producer.send(Array(input[1...])) { _ = try result.get() }
            }
            while relay.deliveredCount < events + 1 { try await Task.sleep(for: .milliseconds(5)) }
        }
        await group.triggerGracefulShutdown()
        try await running.value
        await producer.close()

        let report = RuntimeBenchReport(
            events: events,
            endToEnd: Double(events) / endToEndSeconds,
            sqliteBatchInserts: Double(events) / sqliteSeconds,
            kafkaProduce: Double(events) / produceSeconds)
        print(json ? report.json : report.table)
    }

    /// The pass-through handler: one OrderConfirmed per OrderPlaced, and one row of state.
    struct PassThrough: EventHandler {
        let handledTypes: Set<EventType> = [.orderPlaced]

        func handle(_ envelope: Envelope, in db: Database) throws -> [DomainEvent] {
            guard case .orderPlaced(let order) = envelope.event else { return [] }
            try db.execute(sql: "INSERT INTO keySequence (topic, key, last) VALUES ('bench-state', ?, 0)", arguments: [order.orderId])
            return [.orderConfirmed(OrderConfirmed(orderId: order.orderId, customerId: order.customerId, totalCents: order.totalCents))]
        }
    }

    static func orderPlaced(_ n: Int, customer: String) throws -> OutgoingMessage {
        let event = DomainEvent.orderPlaced(OrderPlaced(
            orderId: "order-\(n)", customerId: customer,
            lines: [OrderLine(productId: "product-\(n % 200)", quantity: 1 + n % 3, unitPriceCents: 1_250)],
            totalCents: 1_250 * (1 + n % 3), currency: "EUR"))
        let envelope = Envelope(eventId: UUID().uuidString.lowercased(), key: customer, sequence: Int64(n + 1),
                                correlationId: "order-\(n)", causationId: nil, occurredAt: Timestamp.now(), source: "bench", event: event)
        return try Wire.message(for: envelope, traceparent: TraceContext.newTrace().traceparent)
    }

    /// The baseline: rows the size of an outbox row, inserted with GRDB in 500-row transactions.
    static func rawInserts(count: Int, sample: OutgoingMessage, at path: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
            try db.execute(sql: "CREATE TABLE row (id INTEGER PRIMARY KEY, topic TEXT, key BLOB, value BLOB)")
        }
        let value = Data(sample.value)
        let key = Data(sample.key ?? [])
        for start in stride(from: 0, to: count, by: 500) {
            try queue.write { db in
                let statement = try db.makeStatement(sql: "INSERT INTO row (topic, key, value) VALUES (?, ?, ?)")
                for _ in start..<min(start + 500, count) { try statement.execute(arguments: ["orders", key, value]) }
            }
        }
    }
}

struct RuntimeBenchReport: Encodable {
    let events: Int
    let endToEnd: Double
    let sqliteBatchInserts: Double
    let kafkaProduce: Double

    var json: String {
        ["events": Double(events), "endToEndEventsPerSecond": endToEnd.rounded(),
         "sqliteBatchInsertRowsPerSecond": sqliteBatchInserts.rounded(), "kafkaProduceMessagesPerSecond": kafkaProduce.rounded()].jsonLine
    }

    var table: String {
        """
        \(events) events through consume → handler → SQLite → outbox → relay
          end to end               \(String(format: "%10.0f", endToEnd)) events/s
          raw SQLite batch inserts \(String(format: "%10.0f", sqliteBatchInserts)) rows/s   (runtime at \(String(format: "%.2f", endToEnd / sqliteBatchInserts))×)
          Kafka layer produce      \(String(format: "%10.0f", kafkaProduce)) msgs/s   (runtime at \(String(format: "%.2f", endToEnd / kafkaProduce))×)
        """
    }
}
