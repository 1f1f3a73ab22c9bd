/// Every event of the contract. Each payload says here, once, which topic it goes to and which field is its key,
/// so no service can publish an event on the wrong topic or with the wrong key.
public enum DomainEvent: Sendable, Hashable {
    case orderPlaced(OrderPlaced)
    case orderConfirmed(OrderConfirmed)
    case orderCancelled(OrderCancelled)
    case paymentAuthorized(PaymentAuthorized)
    case paymentDeclined(PaymentDeclined)
    case paymentCaptured(PaymentCaptured)
    case paymentRefunded(PaymentRefunded)
    case stockReserved(StockReserved)
    case stockShortage(StockShortage)
    case stockReleased(StockReleased)
    case stockRestocked(StockRestocked)
    case notificationSent(NotificationSent)

    /// The `type` field and `event-type` header.
    public var type: EventType {
        switch self {
        case .orderPlaced: .orderPlaced
        case .orderConfirmed: .orderConfirmed
        case .orderCancelled: .orderCancelled
        case .paymentAuthorized: .paymentAuthorized
        case .paymentDeclined: .paymentDeclined
        case .paymentCaptured: .paymentCaptured
        case .paymentRefunded: .paymentRefunded
        case .stockReserved: .stockReserved
        case .stockShortage: .stockShortage
        case .stockReleased: .stockReleased
        case .stockRestocked: .stockRestocked
        case .notificationSent: .notificationSent
        }
    }

    public var topic: Topic { type.topic }

    /// The Kafka key: the entity the event is about.
    public var key: String {
        switch self {
        case .orderPlaced(let event): event.customerId
        case .orderConfirmed(let event): event.customerId
        case .orderCancelled(let event): event.customerId
        case .paymentAuthorized(let event): event.orderId
        case .paymentDeclined(let event): event.orderId
        case .paymentCaptured(let event): event.orderId
        case .paymentRefunded(let event): event.orderId
        case .stockReserved(let event): event.productId
        case .stockShortage(let event): event.productId
        case .stockReleased(let event): event.productId
        case .stockRestocked(let event): event.productId
        case .notificationSent(let event): event.customerId
        }
    }

    /// The order the event belongs to; none for restocking.
    public var correlationId: String? {
        switch self {
        case .orderPlaced(let event): event.orderId
        case .orderConfirmed(let event): event.orderId
        case .orderCancelled(let event): event.orderId
        case .paymentAuthorized(let event): event.orderId
        case .paymentDeclined(let event): event.orderId
        case .paymentCaptured(let event): event.orderId
        case .paymentRefunded(let event): event.orderId
        case .stockReserved(let event): event.orderId
        case .stockShortage(let event): event.orderId
        case .stockReleased(let event): event.orderId
        case .stockRestocked: nil
        case .notificationSent(let event): event.orderId
        }
    }
}

/// The event types of the contract, by their wire names.
public enum EventType: String, Sendable, Hashable, CaseIterable, Codable {
    case orderPlaced = "OrderPlaced"
    case orderConfirmed = "OrderConfirmed"
    case orderCancelled = "OrderCancelled"
    case paymentAuthorized = "PaymentAuthorized"
    case paymentDeclined = "PaymentDeclined"
    case paymentCaptured = "PaymentCaptured"
    case paymentRefunded = "PaymentRefunded"
    case stockReserved = "StockReserved"
    case stockShortage = "StockShortage"
    case stockReleased = "StockReleased"
    case stockRestocked = "StockRestocked"
    case notificationSent = "NotificationSent"

    /// The payload schema versions this build reads and writes.
    public var supportedVersions: ClosedRange<Int> { 1...1 }
    public var currentVersion: Int { 1 }

    /// The one topic each type is written to.
    public var topic: Topic {
        switch self {
        case .orderPlaced, .orderConfirmed, .orderCancelled: .orders
        case .paymentAuthorized, .paymentDeclined, .paymentCaptured, .paymentRefunded: .payments
        case .stockReserved, .stockShortage, .stockReleased, .stockRestocked: .inventory
        case .notificationSent: .notifications
        }
    }
}
