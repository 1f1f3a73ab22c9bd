import DomainEvents
import GRDB

/// What a customer may spend and has spent: authorized minus refunded, never above the limit.
struct CustomerCredit: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "customerCredit"
    var customerId: String
    var limitCents: Int
    var usedCents: Int
}

/// One payment per order: its authorization (or decline) and refund.
struct Payment: Codable, FetchableRecord, PersistableRecord {
    enum Status: String, Codable { case authorized, declined, refunded }

    var orderId: String
    var customerId: String
    var paymentId: String?
    var amountCents: Int
    var currency: String
    var status: Status

    init(_ order: OrderPlaced, paymentId: String?, status: Status) {
        orderId = order.orderId
        customerId = order.customerId
        self.paymentId = paymentId
        amountCents = order.totalCents
        currency = order.currency
        self.status = status
    }
}

enum PaymentSchema {
    static func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("payment-1") { db in
            try db.create(table: "customerCredit") { table in
                table.primaryKey("customerId", .text)
                table.column("limitCents", .integer).notNull()
                table.column("usedCents", .integer).notNull().check { $0 >= 0 && $0 <= Column("limitCents") }
            }
            try db.create(table: "payment") { table in
                table.primaryKey("orderId", .text)
                table.column("customerId", .text).notNull().indexed()
                table.column("paymentId", .text)
                table.column("amountCents", .integer).notNull()
                table.column("currency", .text).notNull()
                table.column("status", .text).notNull()
            }
        }
    }
}
