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
        let host = ServiceHost(settings: settings, handler: InventoryHandler(catalogue: .standard), topics: [.orders], migrations: InventorySchema.migrate,
                               retention: [.endedOrders])
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
                let outcome = try await database.write { db -> RestockOutcome in
                    guard let stock = try Stock.fetchOne(db, key: id) else { return .unknownProduct }
                    // Reserved units come back on a cancellation: counted here, so that no later release leaves
                    // the contract's range either.
                    let reserved = try Reservation.heldQuantity(of: id, in: db)
                    let most = ContractValues.stockLevels.upperBound - stock.available - reserved
                    guard body.quantity <= most else { return .overContract(available: stock.available, reserved: reserved, most: max(0, most)) }
                    let available = try Stock.release(body.quantity, of: id, in: db)
                    let event = StockRestocked(productId: id, quantity: body.quantity, available: available)
                    try Outbox.append([.stockRestocked(event)], cause: cause, source: settings.service, in: db)
                    return .restocked(event)
                }
                let restocked: StockRestocked
                switch outcome {
                case .unknownProduct: return JSONResponse.error(.notFound, "no product '\(id)'", field: "id")
                case .overContract(let available, let reserved, let most):
                    return JSONResponse.error(.unprocessableContent, """
                        restocking \(body.quantity) would take '\(id)' past the contract's \(ContractValues.stockLevels.upperBound) units \
                        (\(available) available, \(reserved) reserved): at most \(most) more can be taken
                        """, field: "quantity")
                case .restocked(let event): restocked = event
                }
                // The warehouse was told "done": the restock must survive a power loss, though nothing consumed made it.
                try ServiceDatabase.syncCommitted(at: settings.databasePath)
                relay.wake()
                DomainCounter.record(.stockRestocked(restocked))
                return JSONResponse.make(.ok, restocked)
            }
            return [makeHTTPServer(router: router, port: settings.port, logger: Logger(label: "inventory-service.http"))]
        }
    }
}

/// What a restock request came to, decided in its transaction.
enum RestockOutcome {
    case unknownProduct
    case overContract(available: Int, reserved: Int, most: Int)
    case restocked(StockRestocked)
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
