import Catalogue
import DomainEvents
import GRDB
import ServiceRuntime

/// payment-service's reactions (docs/contract.md, saga step 2). An authorization is a hold on the customer's
/// credit: a placed order is authorized only if the customer's open holds plus its total stay within the limit,
/// and the hold ends when the confirmed order is captured or the cancelled order refunded, each exactly once.
/// So credit frees up as orders end, however long the shop runs.
struct PaymentHandler: EventHandler {
    let credit: CreditPolicy
    let handledTypes: Set<EventType> = [.orderPlaced, .orderConfirmed, .orderCancelled]

    func handle(_ envelope: Envelope, in db: Database) throws -> [DomainEvent] {
        switch envelope.event {
        case .orderPlaced(let order):
            guard try !Payment.exists(db, where: "orderId", is: order.orderId), try !EndedOrder.exists(db, where: "orderId", is: order.orderId) else {
                return []
            }
            var account = try CustomerCredit.fetchOne(db, where: "customerId", is: order.customerId)
                ?? CustomerCredit(customerId: order.customerId, limitCents: credit.limitCents(for: order.customerId), heldCents: 0)
            guard account.heldCents + order.totalCents <= account.limitCents else {
                try Payment(order, status: .declined).insertCached(db)
                try account.upsertCached(db, key: "customerId")
                return [.paymentDeclined(PaymentDeclined(orderId: order.orderId, customerId: order.customerId, reason: "insufficient-credit"))]
            }
            account.heldCents += order.totalCents
            try account.upsertCached(db, key: "customerId")
            let payment = Payment(order, status: .authorized)
            try payment.insertCached(db)
            return [.paymentAuthorized(PaymentAuthorized(
                orderId: order.orderId, customerId: order.customerId, paymentId: payment.paymentId,
                amountCents: payment.amountCents, currency: payment.currency))]

        case .orderConfirmed(let confirmation):
            guard let payment = try Payment.endHold(of: confirmation.orderId, as: .captured, in: db) else { return [] }
            return [.paymentCaptured(PaymentCaptured(
                orderId: payment.orderId, customerId: payment.customerId, paymentId: payment.paymentId,
                amountCents: payment.amountCents, currency: payment.currency))]

        case .orderCancelled(let cancellation):
            guard let payment = try Payment.endHold(of: cancellation.orderId, as: .refunded, in: db) else {
                try EndedOrder(orderId: cancellation.orderId).upsertCached(db, key: "orderId")
                return []
            }
            return [.paymentRefunded(PaymentRefunded(
                orderId: payment.orderId, customerId: payment.customerId, paymentId: payment.paymentId,
                amountCents: payment.amountCents, currency: payment.currency))]

        default:
            return []
        }
    }
}
