import Catalogue
import GRDB
import ServiceRuntime

/// Units on hand per product.
struct Stock: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "stock"
    var productId: String
    var available: Int

    static let columns = ["productId", "available"]
    var values: [DatabaseValue] { [productId.databaseValue, available.databaseValue] }

    /// Adds units (released or restocked) and returns the stock after the movement.
    static func release(_ quantity: Int, of productId: String, in db: Database) throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: "UPDATE stock SET available = available + ? WHERE productId = ? RETURNING available"),
                         arguments: [quantity, productId])!
    }
}

// In an extension, so that the struct keeps its memberwise initializer.
extension Stock {
    /// Read by hand for the reason `ListedColumns` gives: every line of every placement reads its stock.
    init(row: Row) throws {
        productId = try row.decode(forColumn: "productId")
        available = try row.decode(forColumn: "available")
    }
}

/// Units held for one line of an order until the order is confirmed or cancelled.
struct Reservation: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "reservation"
    var orderId: String
    var productId: String
    var quantity: Int
    var released: Bool

    static let columns = ["orderId", "productId", "quantity", "released"]
    var values: [DatabaseValue] { [orderId.databaseValue, productId.databaseValue, quantity.databaseValue, released.databaseValue] }

    /// The order's reservations not yet released.
    static func held(for orderId: String, in db: Database) throws -> [Reservation] {
        try fetchAll(db.cachedStatement(sql: "SELECT * FROM reservation WHERE orderId = ? AND NOT released"), arguments: [orderId])
    }

    /// Units of a product held for orders and not yet released: what cancellations may still give back.
    static func heldQuantity(of productId: String, in db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT coalesce(sum(quantity), 0) FROM reservation WHERE productId = ? AND NOT released",
                         arguments: [productId]) ?? 0
    }

    func markReleased(in db: Database) throws {
        try db.cachedStatement(sql: "UPDATE reservation SET released = 1 WHERE orderId = ? AND productId = ?")
            .execute(arguments: [orderId, productId])
    }
}

/// An order that could not be reserved, so that a redelivered placement is not reserved later.
struct Shortage: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "shortage"
    var orderId: String

    static let columns = ["orderId"]
    var values: [DatabaseValue] { [orderId.databaseValue] }
}

/// An order cancelled before this service reserved anything for it, so that its placement, arriving late
/// from a dead-letter replay, reserves nothing for an order nothing will release.
struct EndedOrder: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "endedOrder"
    var orderId: String

    static let columns = ["orderId"]
    var values: [DatabaseValue] { [orderId.databaseValue] }
}

enum InventorySchema {
    static func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("inventory-1") { db in
            try db.create(table: "stock") { table in
                table.primaryKey("productId", .text)
                table.column("available", .integer).notNull().check { $0 >= 0 }
            }
            try db.create(table: "reservation") { table in
                table.column("orderId", .text).notNull()
                table.column("productId", .text).notNull()
                table.column("quantity", .integer).notNull()
                table.column("released", .boolean).notNull()
                table.primaryKey(["orderId", "productId"])
            }
            try db.create(table: "shortage") { table in
                table.primaryKey("orderId", .text)
            }
            for product in Catalogue.standard.products {
                try Stock(productId: product.productId, available: product.initialStock).insert(db)
            }
        }
        migrator.registerMigration("inventory-2-ended-orders") { db in
            try db.create(table: "endedOrder") { table in
                table.primaryKey("orderId", .text)
            }
        }
        // When each order was remembered as ended, so that it can be forgotten with the inbox (`RetentionRule`).
        migrator.registerMigration("inventory-3-ended-at") { db in
            try RetentionRule.addTimestamp("endedAt", to: "endedOrder", key: "orderId", in: db)
        }
    }
}
