import DomainEvents
import Foundation
import GRDB
import ServiceRuntime

/// An order and where it stands in the saga: pending until confirmed or cancelled, exactly once.
struct Order: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "customerOrder"

    enum Status: String, Codable, DatabaseValueConvertible { case pending, confirmed, cancelled }

    var orderId: String
    var customerId: String
    var status: Status
    var reason: CancellationReason?
    var detail: String?
    var totalCents: Int
    var currency: String
    var lineCount: Int
    var paymentAuthorized: Bool
    var reservedLines: Int
    var idempotencyKey: String?
    var createdAt: String
    var updatedAt: String

    static let columns = [
        "orderId", "customerId", "status", "reason", "detail", "totalCents", "currency", "lineCount",
        "paymentAuthorized", "reservedLines", "idempotencyKey", "createdAt", "updatedAt",
    ]

    var values: [DatabaseValue] {
        [
            orderId.databaseValue, customerId.databaseValue, status.databaseValue, reason?.rawValue.databaseValue ?? .null,
            detail.databaseValue, totalCents.databaseValue, currency.databaseValue, lineCount.databaseValue,
            paymentAuthorized.databaseValue, reservedLines.databaseValue, idempotencyKey.databaseValue,
            createdAt.databaseValue, updatedAt.databaseValue,
        ]
    }

    /// Read by hand for the reason `ListedColumns` gives: every event order-service applies reads its order.
    init(row: Row) throws {
        orderId = try row.decode(forColumn: "orderId")
        customerId = try row.decode(forColumn: "customerId")
        status = try row.decode(forColumn: "status")
        reason = try row.decodeIfPresent(CancellationReason.self, forColumn: "reason")
        detail = try row.decode(forColumn: "detail")
        totalCents = try row.decode(forColumn: "totalCents")
        currency = try row.decode(forColumn: "currency")
        lineCount = try row.decode(forColumn: "lineCount")
        paymentAuthorized = try row.decode(forColumn: "paymentAuthorized")
        reservedLines = try row.decode(forColumn: "reservedLines")
        idempotencyKey = try row.decode(forColumn: "idempotencyKey")
        createdAt = try row.decode(forColumn: "createdAt")
        updatedAt = try row.decode(forColumn: "updatedAt")
    }

    /// A new order as its `OrderPlaced` describes it, created when that event was.
    init(_ placed: OrderPlaced, placedAt: String, idempotencyKey: String?) {
        orderId = placed.orderId
        customerId = placed.customerId
        status = .pending
        totalCents = placed.totalCents
        currency = placed.currency
        lineCount = placed.lines.count
        paymentAuthorized = false
        reservedLines = 0
        self.idempotencyKey = idempotencyKey
        createdAt = placedAt
        updatedAt = placedAt
    }

    /// Writes the order with its lines.
    func insert(with lines: [OrderLine], in db: Database) throws {
        try insertCached(db)
        for line in lines {
            try OrderLineRow(orderId: orderId, productId: line.productId, quantity: line.quantity, unitPriceCents: line.unitPriceCents).insertCached(db)
        }
    }

    mutating func confirm(in db: Database) throws -> [DomainEvent] {
        end(confirmedAt: Timestamp.now())
        try updateCached(db, key: "orderId")
        return [.orderConfirmed(OrderConfirmed(orderId: orderId, customerId: customerId, totalCents: totalCents))]
    }

    mutating func cancel(_ reason: CancellationReason, detail: String, in db: Database) throws -> [DomainEvent] {
        end(cancelledFor: reason, detail: detail, at: Timestamp.now())
        try updateCached(db, key: "orderId")
        return [.orderCancelled(OrderCancelled(orderId: orderId, customerId: customerId, reason: reason, detail: detail))]
    }

    /// The order's end, as deciding it (`confirm`) and rebuilding it from the log (`OrderHistory`) both record it.
    mutating func end(confirmedAt time: String) {
        status = .confirmed
        updatedAt = time
    }

    mutating func end(cancelledFor reason: CancellationReason, detail: String, at time: String) {
        status = .cancelled
        self.reason = reason
        self.detail = detail
        updatedAt = time
    }
}

struct OrderLineRow: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "orderLine"
    var orderId: String
    var productId: String
    var quantity: Int
    var unitPriceCents: Int

    static let columns = ["orderId", "productId", "quantity", "unitPriceCents"]
    var values: [DatabaseValue] { [orderId.databaseValue, productId.databaseValue, quantity.databaseValue, unitPriceCents.databaseValue] }
}

/// Every event that touched an order, in the order order-service saw them.
struct TimelineEntry: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "timelineEntry"

    /// An ended order's timeline is forgotten with the inbox; the order itself (its status, lines, reason) stays.
    static let retention = RetentionRule(table: databaseTableName, key: "id", condition: """
        occurredAt < :cutoff AND EXISTS (SELECT 1 FROM customerOrder WHERE customerOrder.orderId = timelineEntry.orderId AND status != 'pending')
        """)
    var orderId: String
    var eventId: String
    var type: String
    var source: String
    var occurredAt: String

    static let columns = ["orderId", "eventId", "type", "source", "occurredAt"]
    var values: [DatabaseValue] {
        [orderId.databaseValue, eventId.databaseValue, type.databaseValue, source.databaseValue, occurredAt.databaseValue]
    }

    init(_ envelope: Envelope) {
        orderId = envelope.correlationId ?? ""
        eventId = envelope.eventId
        type = envelope.type.rawValue
        source = envelope.source
        occurredAt = envelope.occurredAt
    }
}

enum OrderSchema {
    static func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("order-1") { db in
            try db.create(table: "customerOrder") { table in
                table.primaryKey("orderId", .text)
                table.column("customerId", .text).notNull().indexed()
                table.column("status", .text).notNull()
                table.column("reason", .text)
                table.column("detail", .text)
                table.column("totalCents", .integer).notNull()
                table.column("currency", .text).notNull()
                table.column("lineCount", .integer).notNull()
                table.column("paymentAuthorized", .boolean).notNull()
                table.column("reservedLines", .integer).notNull()
                table.column("idempotencyKey", .text).unique()
                table.column("createdAt", .text).notNull()
                table.column("updatedAt", .text).notNull()
            }
            try db.create(table: "orderLine") { table in
                table.column("orderId", .text).notNull()
                table.column("productId", .text).notNull()
                table.column("quantity", .integer).notNull()
                table.column("unitPriceCents", .integer).notNull()
                table.primaryKey(["orderId", "productId"])
            }
            try db.create(table: "timelineEntry") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("orderId", .text).notNull().indexed()
                table.column("eventId", .text).notNull()
                table.column("type", .text).notNull()
                table.column("source", .text).notNull()
                table.column("occurredAt", .text).notNull()
            }
        }
    }
}
