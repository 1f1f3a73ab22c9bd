import DomainEvents
import GRDB
import ServiceRuntime

/// A customer's credit: the limit, and the open holds (authorized, neither captured nor refunded yet) against it.
struct CustomerCredit: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "customerCredit"
    var customerId: String
    var limitCents: Int
    var heldCents: Int

    static let columns = ["customerId", "limitCents", "heldCents"]
    var values: [DatabaseValue] { [customerId.databaseValue, limitCents.databaseValue, heldCents.databaseValue] }
}

// In an extension, so that the struct keeps its memberwise initializer.
extension CustomerCredit {
    /// Read by hand for the reason `ListedColumns` gives: every placement payment-service applies reads one.
    init(row: Row) throws {
        customerId = try row.decode(forColumn: "customerId")
        limitCents = try row.decode(forColumn: "limitCents")
        heldCents = try row.decode(forColumn: "heldCents")
    }
}

/// One payment per order: authorized (a hold) or declined, then captured or refunded, which ends the hold.
struct Payment: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "payment"
    enum Status: String, Codable, DatabaseValueConvertible { case authorized, declined, captured, refunded }

    var orderId: String
    var customerId: String
    /// Derived from the order, so that reprocessing its placement authorizes under the same payment ID.
    var paymentId: String
    var amountCents: Int
    var currency: String
    var status: Status

    init(_ order: OrderPlaced, status: Status) {
        orderId = order.orderId
        customerId = order.customerId
        paymentId = "pay-" + EventID.uuid5(name: "payment/\(order.orderId)")
        amountCents = order.totalCents
        currency = order.currency
        self.status = status
    }

    static let columns = ["orderId", "customerId", "paymentId", "amountCents", "currency", "status"]
    var values: [DatabaseValue] {
        [orderId.databaseValue, customerId.databaseValue, paymentId.databaseValue, amountCents.databaseValue, currency.databaseValue, status.databaseValue]
    }

    /// Read by hand for the reason `ListedColumns` gives: every capture and refund reads its payment.
    init(row: Row) throws {
        orderId = try row.decode(forColumn: "orderId")
        customerId = try row.decode(forColumn: "customerId")
        paymentId = try row.decode(forColumn: "paymentId")
        amountCents = try row.decode(forColumn: "amountCents")
        currency = try row.decode(forColumn: "currency")
        status = try row.decode(forColumn: "status")
    }

    /// Captures or refunds an authorized payment and releases its hold; nil if there is no hold to end.
    static func endHold(of orderId: String, as status: Status, in db: Database) throws -> Payment? {
        guard var payment = try fetchOne(db, where: "orderId", is: orderId), payment.status == .authorized else { return nil }
        payment.status = status
        try payment.updateCached(db, key: "orderId")
        try db.cachedStatement(sql: "UPDATE customerCredit SET heldCents = heldCents - ? WHERE customerId = ?")
            .execute(arguments: [payment.amountCents, payment.customerId])
        return payment
    }
}

/// An order that ended (cancelled) before this service authorized anything for it, so that its placement,
/// arriving late from a dead-letter replay, neither holds credit nor charges for an order nothing will confirm.
struct EndedOrder: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "endedOrder"
    var orderId: String

    static let columns = ["orderId"]
    var values: [DatabaseValue] { [orderId.databaseValue] }
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
        // Capture ends a hold as a refund does, so what was "used" is now what is held.
        migrator.registerMigration("payment-2-holds") { db in
            try db.execute(sql: "ALTER TABLE customerCredit RENAME COLUMN usedCents TO heldCents")
            try db.execute(sql: "UPDATE payment SET paymentId = 'pay-' || orderId WHERE paymentId IS NULL")
        }
        migrator.registerMigration("payment-3-ended-orders") { db in
            try db.create(table: "endedOrder") { table in
                table.primaryKey("orderId", .text)
            }
        }
        // When each order was remembered as ended, so that it can be forgotten with the inbox (`RetentionRule`).
        migrator.registerMigration("payment-4-ended-at") { db in
            try RetentionRule.addTimestamp("endedAt", to: "endedOrder", key: "orderId", in: db)
        }
    }
}
