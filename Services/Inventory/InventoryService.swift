import ArgumentParser
import Catalogue
import DomainEvents
import GRDB
import Hummingbird
import Logging
import ServiceRuntime

@main
struct InventoryService: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inventory-service",
        abstract: "Reserves stock for placed orders, releases it for cancelled ones, and takes restocking.",
        discussion: """
        Consumes `orders`, writes `inventory`. HTTP (port 8082): GET /health, GET /products, GET /products/{id},
        POST /products/{id}/restock {"quantity": n}.
        """)

    @OptionGroup var runtime: RuntimeOptions

    func run() async throws {
        let settings = try runtime.resolve(service: "inventory-service", defaultPort: 8082)
        let host = ServiceHost(settings: settings, handler: InventoryHandler(catalogue: .standard), topics: [.orders], migrations: InventorySchema.migrate)
        try await host.run { context in
            let (database, relay) = (context.database, context.relay)
            let router = makeServiceRouter(context: context, apiPaths: ["/products", "/products/{id}", "/products/{id}/restock"])
            router.get("/products") { _, _ in
                let stock = try await database.read { db in try Stock.fetchAll(db) }
                return JSONResponse.make(.ok, stock.compactMap(ProductView.init))
            }
            router.get("/products/{id}") { _, context in
                let id = try context.parameters.require("id")
                guard let view = try await database.read({ db in try Stock.fetchOne(db, key: id) }).flatMap(ProductView.init) else {
                    return JSONResponse.error(.notFound, "no product '\(id)'", field: "id")
                }
                return JSONResponse.make(.ok, view)
            }
            router.post("/products/{id}/restock") { request, context in
                var request = request
                let id = try context.parameters.require("id")
                let body: RestockRequest
                switch try await request.decodeJSON(RestockRequest.self) {
                case .success(let decoded): body = decoded
                case .failure(let error): return error.response
                }
                guard (1...1_000_000).contains(body.quantity) else {
                    return JSONResponse.error(.unprocessableContent, "quantity must be between 1 and 1000000", field: "quantity")
                }
                let cause = EventCause.request(traceparent: request.headers[.traceparent])
                let restocked = try await database.write { db -> StockRestocked? in
                    guard try Stock.fetchOne(db, key: id) != nil else { return nil }
                    let available = try Stock.release(body.quantity, of: id, in: db)
                    let event = StockRestocked(productId: id, quantity: body.quantity, available: available)
                    try Outbox.append([.stockRestocked(event)], cause: cause, source: settings.service, in: db)
                    return event
                }
                guard let restocked else { return JSONResponse.error(.notFound, "no product '\(id)'", field: "id") }
                relay.wake()
                DomainCounter.record(.stockRestocked(restocked))
                return JSONResponse.make(.ok, restocked)
            }
            return [makeHTTPServer(router: router, port: settings.port, logger: Logger(label: "inventory-service.http"))]
        }
    }
}

struct RestockRequest: Decodable {
    let quantity: Int
}

struct ProductView: Encodable {
    let productId: String
    let name: String
    let unitPriceCents: Int
    let available: Int

    init?(_ stock: Stock) {
        guard let product = Catalogue.standard.product(stock.productId) else { return nil }
        productId = stock.productId
        name = product.name
        unitPriceCents = product.unitPriceCents
        available = stock.available
    }
}
