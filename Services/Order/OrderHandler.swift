import DomainEvents
import GRDB
import ServiceRuntime

/// order-service's saga decision (docs/contract.md, step 4): an order is confirmed when its payment is authorized
/// and all of its lines are reserved, and cancelled on the first decline or shortage. An order ends exactly once;
/// what arrives after its end (the capture or refund, released stock, the email) is recorded on its timeline,
/// not acted on.
struct OrderHandler: EventHandler {
    let handledTypes: Set<EventType> = [
        .paymentAuthorized, .paymentDeclined, .paymentCaptured, .paymentRefunded,
        .stockReserved, .stockShortage, .stockReleased, .notificationSent,
    ]

    func handle(_ envelope: Envelope, in db: Database) throws -> [DomainEvent] {
        guard let orderId = envelope.correlationId, var order = try Order.fetchOne(db, where: "orderId", is: orderId) else { return [] }
        try TimelineEntry(envelope).insertCached(db)
        guard order.status == .pending else { return [] }

        switch envelope.event {
        case .paymentAuthorized:
            order.paymentAuthorized = true
        case .stockReserved:
            order.reservedLines += 1
        case .paymentDeclined(let declined):
            return try order.cancel(.paymentDeclined, detail: declined.reason, in: db)
        case .stockShortage(let shortage):
            let detail = "\(shortage.productId): requested \(shortage.requested), available \(shortage.available)"
            return try order.cancel(.outOfStock, detail: detail, in: db)
        default:
            return []
        }
        guard order.paymentAuthorized && order.reservedLines == order.lineCount else {
            try order.updateCached(db, key: "orderId")
            return []
        }
        return try order.confirm(in: db)
    }

    /// The order's own terminal event joins its timeline as it is written.
    func emitted(_ envelopes: [Envelope], in db: Database) throws {
        for envelope in envelopes { try TimelineEntry(envelope).insertCached(db) }
    }
}
