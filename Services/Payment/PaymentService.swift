import ArgumentParser
import Catalogue
import Hummingbird
import Logging
import ServiceRuntime

@main
struct PaymentService: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payment-service",
        abstract: "Holds each placed order's total against the customer's credit, captures confirmed orders, refunds cancelled ones.",
        discussion: "Consumes `orders`, writes `payments`. HTTP: GET /health, GET /customers/{id}/credit (limit and open holds; port 8081).")

    @OptionGroup var runtime: RuntimeOptions

    func run() async throws {
        let settings = try runtime.resolve(service: "payment-service", defaultPort: 8081)
        let host = ServiceHost(settings: settings, handler: PaymentHandler(credit: .standard), topics: [.orders], migrations: PaymentSchema.migrate,
                               retention: [.endedOrders])
        try await host.run { context in
            let database = context.database
            let router = makeServiceRouter(context: context, apiPaths: ["/customers/{id}/credit"])
            router.get("/customers/{id}/credit") { _, context in
                let id = try context.parameters.require("id")
                let account = try await database.read { db in try CustomerCredit.fetchOne(db, key: id) }
                return JSONResponse.make(.ok, account ?? CustomerCredit(customerId: id, limitCents: CreditPolicy.standard.limitCents(for: id), heldCents: 0))
            }
            return [makeHTTPServer(router: router, port: settings.port, logger: Logger(label: "payment-service.http"))]
        }
    }
}
