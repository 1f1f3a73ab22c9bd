import DomainEvents
import GRDB
import ServiceRuntime

/// notification-service's reactions (docs/contract.md, saga step 5): one email per order outcome. The handler only
/// records the email; `MailWriter` delivers it, so a redelivered outcome finds the email already recorded.
struct NotificationHandler: EventHandler {
    let handledTypes: Set<EventType> = [.orderConfirmed, .orderCancelled]

    func handle(_ envelope: Envelope, in db: Database) throws -> [DomainEvent] {
        let email: Email
        switch envelope.event {
        case .orderConfirmed(let order):
            email = Email(
                orderId: order.orderId, customerId: order.customerId, kind: .orderConfirmed,
                subject: "Your order \(order.orderId) is confirmed",
                body: "Thank you! Your order \(order.orderId) of \(Money(order.totalCents)) is confirmed and on its way.")
        case .orderCancelled(let order):
            let why = switch order.reason {
            case .paymentDeclined: "your payment was declined (\(order.detail))"
            case .outOfStock: "an item is out of stock (\(order.detail))"
            }
            email = Email(
                orderId: order.orderId, customerId: order.customerId, kind: .orderCancelled,
                subject: "Your order \(order.orderId) was cancelled",
                body: "We are sorry: your order \(order.orderId) was cancelled because \(why). Nothing was charged.")
        default:
            return []
        }
        guard try !Email.exists(db, where: "orderId", is: email.orderId) else { return [] }
        try email.insertCached(db)
        return [.notificationSent(NotificationSent(
            notificationId: email.notificationId, orderId: email.orderId, customerId: email.customerId,
            kind: email.kind, channel: "email", messageId: email.messageId))]
    }
}

/// Cents as a price, for people.
struct Money: CustomStringConvertible {
    let cents: Int
    init(_ cents: Int) { self.cents = cents }
    var description: String { "€\(cents / 100).\(String(format: "%02d", cents % 100))" }
}
