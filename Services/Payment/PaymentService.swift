import ArgumentParser
import Catalogue
import Hummingbird
import Logging
import ServiceRuntime

@main
struct PaymentService: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payment-service",
        abstract: "Authorizes placed orders against each customer's credit and refunds cancelled ones.",
        discussion: "Consumes `orders`, writes `payments`. HTTP: GET /health, GET /customers/{id}/credit (port 8081).")

    @OptionGroup var runtime: RuntimeOptions

    func run() async throws {
        let settings = try runtime.resolve(service: "payment-service", defaultPort: 8081)
        let host = ServiceHost(settings: settings, handler: PaymentHandler(credit: .standard), topics: [.orders], migrations: PaymentSchema.migrate)
        try await host.run { context in
            let database = context.database
            let router = makeServiceRouter(service: settings.service)
            router.get("/customers/{id}/credit") { _, context in
                let id = try context.parameters.require("id")
                let account = try await database.read { db in try CustomerCredit.fetchOne(db, key: id) }
                let limit = account?.limitCents ?? CreditPolicy.standard.limitCents(for: id)
                return JSONResponse.make(.ok, ["customerId": id, "limitCents": "\(limit)", "usedCents": "\(account?.usedCents ?? 0)"])
            }
            return [makeHTTPServer(router: router, port: settings.port, logger: Logger(label: "payment-service.http"))]
        }
    }
}
