import Catalogue
import DomainEvents
import Foundation
import GRDB
import Hummingbird
import OrderPlacement
import ServiceRuntime

/// `POST /orders`, `GET /orders/{id}`, `GET /orders?customerId=`: decode, call one domain function, encode.
struct OrderAPI {

    let context: ServiceContext
    let catalogue: Catalogue
    let source: String

    func register(on router: Router<BasicRequestContext>) {
        router.post("/orders") { request, _ in try await place(request) }
        router.get("/orders/{id}") { _, request in
            let id = try request.parameters.require("id")
            guard let view = try await context.database.read({ db in try OrderView.load(id, in: db, withTimeline: true) }) else {
                return JSONResponse.error(.notFound, "no order '\(id)'", field: "id")
            }
            return JSONResponse.make(.ok, view)
        }
        router.get("/orders") { request, _ in
            let query = request.uri.queryParameters
            guard let customerId = query.get("customerId"), !customerId.isEmpty else {
                return JSONResponse.error(.badRequest, "give the customer: GET /orders?customerId=<id>", field: "customerId")
            }
            var limit = 50
            if let text = query.get("limit") {
                guard let value = Int(text), (1...500).contains(value) else {
                    return JSONResponse.error(.badRequest, "limit must be a whole number from 1 to 500", field: "limit")
                }
                limit = value
            }
            let after = query.get("after")
            let page = try await context.database.read { [limit] db in
                try OrderView.page(of: customerId, after: after, limit: limit, in: db)
            }
            guard let page else {
                return JSONResponse.error(.badRequest, "no order '\(after ?? "")' of customer '\(customerId)' to page after", field: "after")
            }
            var headers: HTTPFields = [:]
            if page.count == limit, let last = page.last {
                var next = URLComponents()
                next.path = "/orders"
                next.queryItems = [.init(name: "customerId", value: customerId), .init(name: "after", value: last.orderId),
                                   .init(name: "limit", value: String(limit))]
                headers[.init("Link")!] = "<\(next.string ?? "")>; rel=\"next\""
            }
            return JSONResponse.make(.ok, page, headers: headers)
        }
    }

    private func place(_ request: Request) async throws -> Response {
        var request = request
        let body: PlaceOrder
        switch try await request.decodeJSON(PlaceOrder.self) {
        case .success(let decoded): body = decoded
        case .failure(let error): return error.response
        }
        if let problem = validate(body) { return problem }
        let idempotencyKey = request.headers[.idempotencyKey]
        if let key = idempotencyKey, key.isEmpty || key.count > 128 {
            return JSONResponse.error(.badRequest, "Idempotency-Key must be 1 to 128 characters", field: "Idempotency-Key")
        }
        let cause = EventCause.request(traceparent: request.headers[.traceparent])
        let outcome: (view: OrderView, placed: OrderPlaced?)
        do {
            outcome = try await context.database.write { db in try placeOrder(body, idempotencyKey: idempotencyKey, cause: cause, in: db) }
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            // The same Idempotency-Key raced in from another request or instance: answer with that order.
            guard let view = try await context.database.read({ db in try OrderView.load(byIdempotencyKey: idempotencyKey ?? "", in: db) }) else { throw error }
            outcome = (view, nil)
        }
        if let placed = outcome.placed {
            context.relay.wake()
            DomainCounter.record(.orderPlaced(placed))
        }
        guard outcome.view.matches(body) else {
            return JSONResponse.error(.unprocessableContent, "this Idempotency-Key was used for a different order", field: "Idempotency-Key")
        }
        return JSONResponse.make(.accepted, outcome.view, headers: [.location: "/orders/\(outcome.view.orderId)"])
    }

    private func validate(_ body: PlaceOrder) -> Response? {
        body.problem(in: catalogue).map { JSONResponse.error(.unprocessableContent, $0.message, field: $0.field) }
    }

    /// Writes the order and its `OrderPlaced` in one transaction; a known Idempotency-Key returns its order.
    private func placeOrder(_ body: PlaceOrder, idempotencyKey: String?, cause: EventCause, in db: Database) throws -> (OrderView, OrderPlaced?) {
        if let key = idempotencyKey, let existing = try OrderView.load(byIdempotencyKey: key, in: db) {
            return (existing, nil)
        }
        let lines = body.lines.map { line in
            OrderLine(productId: line.productId, quantity: line.quantity, unitPriceCents: catalogue.product(line.productId)!.unitPriceCents)
        }
        let placed = OrderPlaced(
            orderId: "ord-" + UUID().uuidString.lowercased(), customerId: body.customerId, lines: lines,
            totalCents: lines.reduce(0) { $0 + $1.quantity * $1.unitPriceCents }, currency: Catalogue.currency)
        let envelopes = try Outbox.append([.orderPlaced(placed)], cause: cause, source: source, in: db)
        // Created when its OrderPlaced was, so that a database rebuilt from the log says the same.
        let order = Order(placed, placedAt: envelopes[0].occurredAt, idempotencyKey: idempotencyKey)
        try order.insert(with: lines, in: db)
        let entry = TimelineEntry(envelopes[0])
        try entry.insertCached(db)
        return (OrderView(order, lines: lines, timeline: [entry]), placed)
    }
}

/// An order as the API shows it.
struct OrderView: Codable {
    struct Event: Codable {
        let type: String
        let eventId: String
        let source: String
        let occurredAt: String
    }

    let orderId: String
    let customerId: String
    let status: Order.Status
    let reason: CancellationReason?
    let detail: String?
    let lines: [OrderLine]
    let totalCents: Int
    let currency: String
    let createdAt: String
    let timeline: [Event]?

    static func load(_ id: String, in db: Database, withTimeline: Bool) throws -> OrderView? {
        guard let order = try Order.fetchOne(db, key: id) else { return nil }
        let lines = try OrderLineRow.filter(Column("orderId") == id).fetchAll(db)
            .map { OrderLine(productId: $0.productId, quantity: $0.quantity, unitPriceCents: $0.unitPriceCents) }
        // In the order the events happened across services; ties keep the order order-service saw them in.
        let timeline = withTimeline
            ? try TimelineEntry.filter(Column("orderId") == id).order(Column("occurredAt"), Column("id")).fetchAll(db) : nil
        return OrderView(order, lines: lines, timeline: timeline)
    }

    /// One page of a customer's orders, oldest first, after the order `after` (nil if that is not one of theirs):
    /// two queries, whatever the page's size, the second reading every line of the page at once.
    static func page(of customerId: String, after: String?, limit: Int, in db: Database) throws -> [OrderView]? {
        var start: (createdAt: String, orderId: String) = ("", "")
        if let after {
            guard let row = try Row.fetchOne(db, sql: "SELECT createdAt, orderId FROM customerOrder WHERE orderId = ? AND customerId = ?",
                                             arguments: [after, customerId]) else { return nil }
            start = (row["createdAt"], row["orderId"])
        }
        let orders = try Order.fetchAll(db, sql: """
            SELECT * FROM customerOrder WHERE customerId = ? AND (createdAt, orderId) > (?, ?)
            ORDER BY createdAt, orderId LIMIT ?
            """, arguments: [customerId, start.createdAt, start.orderId, limit])
        var lines: [String: [OrderLine]] = [:]
        for row in try OrderLineRow.filter(orders.map(\.orderId).contains(Column("orderId"))).fetchAll(db) {
            lines[row.orderId, default: []].append(OrderLine(productId: row.productId, quantity: row.quantity, unitPriceCents: row.unitPriceCents))
        }
        return orders.map { OrderView($0, lines: lines[$0.orderId] ?? [], timeline: nil) }
    }

    init(_ order: Order, lines: [OrderLine], timeline: [TimelineEntry]?) {
        orderId = order.orderId
        customerId = order.customerId
        status = order.status
        reason = order.reason
        detail = order.detail
        self.lines = lines
        totalCents = order.totalCents
        currency = order.currency
        createdAt = order.createdAt
        self.timeline = timeline?.map { Event(type: $0.type, eventId: $0.eventId, source: $0.source, occurredAt: $0.occurredAt) }
    }

    static func load(byIdempotencyKey key: String, in db: Database) throws -> OrderView? {
        // Asked for every placement that carries a key (most do): through a statement prepared once.
        let statement = try db.cachedStatement(sql: "SELECT orderId FROM customerOrder WHERE idempotencyKey = ?")
        guard let id = try String.fetchOne(statement, arguments: [key]) else { return nil }
        return try load(id, in: db, withTimeline: true)
    }

    /// Whether a retried request asks for this very order.
    func matches(_ request: PlaceOrder) -> Bool {
        customerId == request.customerId
            && Set(lines.map { "\($0.productId)×\($0.quantity)" }) == Set(request.lines.map { "\($0.productId)×\($0.quantity)" })
    }
}
