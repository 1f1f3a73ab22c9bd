import DomainEvents
import GRDB
import ServiceRuntime

/// What each of order-service's own events on `orders` says about its tables, for `order-service --rebuild`
/// (docs/runtime.md, "Rebuilding a database from the log"). The decision an event records is taken as it was
/// published, never decided again: replaying payments and inventory could end an order differently when its
/// decline and its shortage arrive in another order.
enum OrderHistory {
    static func apply(_ envelope: Envelope, in db: Database) throws {
        switch envelope.event {
        case .orderPlaced(let placed):
            try Order(placed, placedAt: envelope.occurredAt, idempotencyKey: nil).insert(with: placed.lines, in: db)
        case .orderConfirmed(let confirmed):
            guard var order = try Order.fetchOne(db, key: confirmed.orderId) else { return }
            // A confirmation is published only once the payment is authorized and every line reserved.
            order.paymentAuthorized = true
            order.reservedLines = order.lineCount
            order.end(confirmedAt: envelope.occurredAt)
            try order.update(db)
        case .orderCancelled(let cancelled):
            guard var order = try Order.fetchOne(db, key: cancelled.orderId) else { return }
            order.end(cancelledFor: cancelled.reason, detail: cancelled.detail, at: envelope.occurredAt)
            try order.update(db)
        default:
            return
        }
        try TimelineEntry(envelope).insert(db)
    }

    /// Refuses a database that already holds orders: a rebuild adds to nothing.
    static func requireEmpty(_ db: Database) throws {
        let count = try Order.fetchCount(db)
        guard count == 0 else { throw LogRebuild.Refusal.notEmpty("\(count) orders") }
    }
}
