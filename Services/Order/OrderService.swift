import ArgumentParser
import Catalogue
import DomainEvents
import Hummingbird
import Logging
import ServiceRuntime

@main
struct OrderService: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "order-service",
        abstract: "Takes orders over HTTP and decides each order's outcome from payments and inventory.",
        discussion: """
        Consumes `payments`, `inventory` and `notifications` (for each order's timeline), writes `orders`. HTTP (port 8080): POST /orders, GET /orders/{id},
        GET /orders?customerId=, GET /health.

        After its database is lost, stop every instance and run `order-service --rebuild` once: it rebuilds the orders \
        from `orders` and rewinds the consumed topics, which the next start re-reads.
        """)

    @OptionGroup var runtime: RuntimeOptions

    @Flag(help: "Rebuild an empty database from the log, then exit: the orders from `orders`; payments, inventory and notifications are re-read when the service next starts.")
    var rebuild = false

    func run() async throws {
        let settings = try runtime.resolve(service: "order-service", defaultPort: 8080)
        if rebuild { return try await rebuildFromLog(settings) }
        let host = ServiceHost(settings: settings, handler: OrderHandler(), topics: Self.consumedTopics,
                               // An accepted order exists only in this database until its OrderPlaced is relayed.
                               durability: .durable, migrations: OrderSchema.migrate, retention: [TimelineEntry.retention])
        try await host.run { context in
            let router = makeServiceRouter(context: context, apiPaths: ["/orders", "/orders/{id}"])
            OrderAPI(context: context, catalogue: .standard, source: settings.service).register(on: router)
            return [makeHTTPServer(router: router, port: settings.port, logger: Logger(label: "order-service.http"))]
        }
    }
}

extension OrderService {
    private static let consumedTopics: [Topic] = [.payments, .inventory, .notifications]

    private func rebuildFromLog(_ settings: RuntimeSettings) async throws {
        let database = try ServiceDatabase.open(at: settings.databasePath, durability: .durable, migrations: OrderSchema.migrate)
        if try await !database.read(LogRebuild.wasInterrupted) { try await database.read(OrderHistory.requireEmpty) }
        let summary = try await LogRebuild(settings: settings).run(
            writes: .orders, consumes: Self.consumedTopics, into: database, apply: OrderHistory.apply)
        let orders = try await database.read { db in try Order.fetchCount(db) }
        print("rebuilt \(orders) orders from \(summary.ownEvents) events on orders (\(summary.copies) copies and \(summary.otherMessages) other messages skipped),"
              + " \(summary.keys) key sequences; \(summary.partitionsRewound) consumed partitions rewound to their start, re-read on the next start")
        if !summary.partitionsMissingHistory.isEmpty {
            print("warning: \(summary.partitionsMissingHistory.map(\.description).joined(separator: ", ")) no longer start at offset 0:"
                  + " the timelines miss what they lost")
        }
    }
}
