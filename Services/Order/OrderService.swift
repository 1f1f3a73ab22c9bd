import ArgumentParser
import Catalogue
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
        """)

    @OptionGroup var runtime: RuntimeOptions

    func run() async throws {
        let settings = try runtime.resolve(service: "order-service", defaultPort: 8080)
        let host = ServiceHost(settings: settings, handler: OrderHandler(), topics: [.payments, .inventory, .notifications],
                               // An accepted order exists only in this database until its OrderPlaced is relayed.
                               durability: .durable, migrations: OrderSchema.migrate)
        try await host.run { context in
            let router = makeServiceRouter(context: context, apiPaths: ["/orders", "/orders/{id}"])
            OrderAPI(context: context, catalogue: .standard, source: settings.service).register(on: router)
            return [makeHTTPServer(router: router, port: settings.port, logger: Logger(label: "order-service.http"))]
        }
    }
}
