import Catalogue
import DomainEvents
import Foundation
import GRDB
import ServiceRuntime

/// payment-service's reactions (EVENTS.md, saga step 2): authorize each placed order against the customer's
/// credit, and refund an authorized order once if it is cancelled. It never charges an order twice.
struct PaymentHandler: EventHandler {
    let credit: CreditPolicy
    let handledTypes: Set<EventType> = [.orderPlaced, .orderCancelled]

    func handle(_ envelope: Envelope, in db: Database) throws -> [DomainEvent] {
        switch envelope.event {
        case .orderPlaced(let order):
            guard try Payment.fetchOne(db, key: order.orderId) == nil else { return [] }
            var account = try CustomerCredit.fetchOne(db, key: order.customerId)
                ?? CustomerCredit(customerId: order.customerId, limitCents: credit.limitCents(for: order.customerId), usedCents: 0)
            guard account.usedCents + order.totalCents <= account.limitCents else {
                try Payment(order, paymentId: nil, status: .declined).insert(db)
                try account.save(db)
                return [.paymentDeclined(PaymentDeclined(orderId: order.orderId, customerId: order.customerId, reason: "insufficient-credit"))]
            }
            account.usedCents += order.totalCents
            try account.save(db)
            let payment = Payment(order, paymentId: "pay-" + UUID().uuidString.lowercased(), status: .authorized)
            try payment.insert(db)
            return [.paymentAuthorized(PaymentAuthorized(
                orderId: order.orderId, customerId: order.customerId, paymentId: payment.paymentId!,
                amountCents: payment.amountCents, currency: payment.currency))]

        case .orderCancelled(let cancellation):
            guard var payment = try Payment.fetchOne(db, key: cancellation.orderId), payment.status == .authorized else { return [] }
            payment.status = .refunded
            try payment.update(db)
            try db.execute(
                sql: "UPDATE customerCredit SET usedCents = usedCents - ? WHERE customerId = ?",
                arguments: [payment.amountCents, payment.customerId])
            return [.paymentRefunded(PaymentRefunded(
                orderId: payment.orderId, customerId: payment.customerId, paymentId: payment.paymentId!,
                amountCents: payment.amountCents, currency: payment.currency))]

        default:
            return []
        }
    }
}
