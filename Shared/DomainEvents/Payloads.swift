/// The payloads of docs/contract.md, version 1. Money is integer cents with an ISO 4217 currency; IDs are strings.

public struct OrderLine: Codable, Sendable, Hashable {
    public var productId: String
    public var quantity: Int
    public var unitPriceCents: Int

    public init(productId: String, quantity: Int, unitPriceCents: Int) {
        self.productId = productId
        self.quantity = quantity
        self.unitPriceCents = unitPriceCents
    }
}

public struct OrderPlaced: Codable, Sendable, Hashable {
    public var orderId: String
    public var customerId: String
    public var lines: [OrderLine]
    public var totalCents: Int
    public var currency: String

    public init(orderId: String, customerId: String, lines: [OrderLine], totalCents: Int, currency: String) {
        self.orderId = orderId
        self.customerId = customerId
        self.lines = lines
        self.totalCents = totalCents
        self.currency = currency
    }
}

public struct OrderConfirmed: Codable, Sendable, Hashable {
    public var orderId: String
    public var customerId: String
    public var totalCents: Int

    public init(orderId: String, customerId: String, totalCents: Int) {
        self.orderId = orderId
        self.customerId = customerId
        self.totalCents = totalCents
    }
}

public enum CancellationReason: String, Codable, Sendable, Hashable {
    case paymentDeclined = "payment-declined"
    case outOfStock = "out-of-stock"
}

public struct OrderCancelled: Codable, Sendable, Hashable {
    public var orderId: String
    public var customerId: String
    public var reason: CancellationReason
    public var detail: String

    public init(orderId: String, customerId: String, reason: CancellationReason, detail: String) {
        self.orderId = orderId
        self.customerId = customerId
        self.reason = reason
        self.detail = detail
    }
}

public struct PaymentAuthorized: Codable, Sendable, Hashable {
    public var orderId: String
    public var customerId: String
    public var paymentId: String
    public var amountCents: Int
    public var currency: String

    public init(orderId: String, customerId: String, paymentId: String, amountCents: Int, currency: String) {
        self.orderId = orderId
        self.customerId = customerId
        self.paymentId = paymentId
        self.amountCents = amountCents
        self.currency = currency
    }
}

public struct PaymentDeclined: Codable, Sendable, Hashable {
    public var orderId: String
    public var customerId: String
    public var reason: String

    public init(orderId: String, customerId: String, reason: String) {
        self.orderId = orderId
        self.customerId = customerId
        self.reason = reason
    }
}

/// The authorized amount taken once the order is confirmed; it ends the authorization's hold on the credit.
public struct PaymentCaptured: Codable, Sendable, Hashable {
    public var orderId: String
    public var customerId: String
    public var paymentId: String
    public var amountCents: Int
    public var currency: String

    public init(orderId: String, customerId: String, paymentId: String, amountCents: Int, currency: String) {
        self.orderId = orderId
        self.customerId = customerId
        self.paymentId = paymentId
        self.amountCents = amountCents
        self.currency = currency
    }
}

public struct PaymentRefunded: Codable, Sendable, Hashable {
    public var orderId: String
    public var customerId: String
    public var paymentId: String
    public var amountCents: Int
    public var currency: String

    public init(orderId: String, customerId: String, paymentId: String, amountCents: Int, currency: String) {
        self.orderId = orderId
        self.customerId = customerId
        self.paymentId = paymentId
        self.amountCents = amountCents
        self.currency = currency
    }
}

public struct StockReserved: Codable, Sendable, Hashable {
    public var productId: String
    public var orderId: String
    public var quantity: Int
    /// Stock left after this movement.
    public var available: Int
    /// Lines in the order, so order-service knows how many reservations to expect.
    public var lineCount: Int

    public init(productId: String, orderId: String, quantity: Int, available: Int, lineCount: Int) {
        self.productId = productId
        self.orderId = orderId
        self.quantity = quantity
        self.available = available
        self.lineCount = lineCount
    }
}

public struct StockShortage: Codable, Sendable, Hashable {
    public var productId: String
    public var orderId: String
    public var requested: Int
    public var available: Int

    public init(productId: String, orderId: String, requested: Int, available: Int) {
        self.productId = productId
        self.orderId = orderId
        self.requested = requested
        self.available = available
    }
}

public struct StockReleased: Codable, Sendable, Hashable {
    public var productId: String
    public var orderId: String
    public var quantity: Int
    public var available: Int

    public init(productId: String, orderId: String, quantity: Int, available: Int) {
        self.productId = productId
        self.orderId = orderId
        self.quantity = quantity
        self.available = available
    }
}

public struct StockRestocked: Codable, Sendable, Hashable {
    public var productId: String
    public var quantity: Int
    public var available: Int

    public init(productId: String, quantity: Int, available: Int) {
        self.productId = productId
        self.quantity = quantity
        self.available = available
    }
}

public enum NotificationKind: String, Codable, Sendable, Hashable {
    case orderConfirmed = "order-confirmed"
    case orderCancelled = "order-cancelled"
}

public struct NotificationSent: Codable, Sendable, Hashable {
    public var notificationId: String
    public var orderId: String
    public var customerId: String
    public var kind: NotificationKind
    public var channel: String
    public var messageId: String

    public init(notificationId: String, orderId: String, customerId: String, kind: NotificationKind, channel: String, messageId: String) {
        self.notificationId = notificationId
        self.orderId = orderId
        self.customerId = customerId
        self.kind = kind
        self.channel = channel
        self.messageId = messageId
    }
}
