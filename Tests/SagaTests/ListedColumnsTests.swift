import DomainEvents
import Foundation
import GRDB
import ServiceRuntime
import Testing
@testable import NotificationService
@testable import OrderService

/// The records the hot path writes name their columns by hand (`ListedColumns`), and the ones it reads decode
/// their rows by hand: both must say exactly what GRDB's Codable encoding of the record says, or a row would be
/// written under one name and read under another.
@Suite struct ListedColumnsTests {
    /// The listing gives the Codable encoding's columns and values, and a row written through it reads back as
    /// the same record in the service's own schema.
    static func expectFaithful<Record: ListedColumns & EncodableRecord & FetchableRecord>(
        _ record: Record, schema: (inout DatabaseMigrator) -> Void, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        #expect(Record.columns.count == record.values.count, sourceLocation: sourceLocation)
        let listed = Dictionary(uniqueKeysWithValues: zip(Record.columns, record.values))
        let encoded = try record.databaseDictionary
        #expect(listed == encoded, "\(Record.self)", sourceLocation: sourceLocation)

        let database = try DatabaseQueue()
        var migrator = DatabaseMigrator()
        schema(&migrator)
        try migrator.migrate(database)
        let readBack = try database.write { db in
            try db.execute(sql: "DELETE FROM \"\(Record.databaseTableName)\"")
            try record.insertCached(db)
            return try Record.fetchOne(db, sql: "SELECT * FROM \"\(Record.databaseTableName)\"")
        }
        #expect(try readBack?.databaseDictionary == encoded, "\(Record.self)", sourceLocation: sourceLocation)
    }

    static let placed = OrderPlaced(
        orderId: "ord-listed", customerId: "customer-3",
        lines: [OrderLine(productId: "product-1", quantity: 2, unitPriceCents: 1_250)], totalCents: 2_500, currency: "EUR")

    @Test func orderServiceRecords() throws {
        var order = Order(Self.placed, placedAt: "2026-12-01T22:00:00.000Z", idempotencyKey: "key-1")
        try Self.expectFaithful(order, schema: OrderSchema.migrate)
        order.paymentAuthorized = true
        order.reservedLines = 1
        order.end(cancelledFor: .outOfStock, detail: "product-1: requested 2, available 1", at: "2026-12-01T22:00:01.000Z")
        order.idempotencyKey = nil
        try Self.expectFaithful(order, schema: OrderSchema.migrate)
        try Self.expectFaithful(OrderLineRow(orderId: "ord-listed", productId: "product-1", quantity: 2, unitPriceCents: 1_250), schema: OrderSchema.migrate)
        let envelope = Envelope(eventId: "evt-1", key: "customer-3", sequence: 1, correlationId: "ord-listed", causationId: nil,
                                occurredAt: "2026-12-01T22:00:00.000Z", source: "order-service", event: .orderPlaced(Self.placed))
        try Self.expectFaithful(TimelineEntry(envelope), schema: OrderSchema.migrate)
    }

    @Test func anOrderWhoseReasonNoOneKnowsIsAnError() throws {
        let database = try DatabaseQueue()
        var migrator = DatabaseMigrator()
        OrderSchema.migrate(&migrator)
        try migrator.migrate(database)
        try database.write { db in
            try Order(Self.placed, placedAt: "2026-12-01T22:00:00.000Z", idempotencyKey: nil).insertCached(db)
            try db.execute(sql: "UPDATE customerOrder SET reason = 'boredom'")
            #expect(throws: DatabaseError.self) { try Order.fetchOne(db, where: "orderId", is: "ord-listed") }
        }
    }

    @Test func notificationServiceRecords() throws {
        var email = Email(orderId: "ord-listed", customerId: "customer-3", kind: .orderConfirmed, subject: "Confirmed", body: "Thank you.")
        try Self.expectFaithful(email, schema: Email.migrate)
        email.failedAt = "2026-12-01T22:00:02.000Z"
        email.failureReason = "550 no such mailbox"
        try Self.expectFaithful(email, schema: Email.migrate)
    }
}
