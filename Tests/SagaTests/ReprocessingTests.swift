import Catalogue
import DomainEvents
import Foundation
import GRDB
import Kafka
import Logging
import ServiceRuntime
import Testing
@testable import InventoryService
@testable import PaymentService

/// Derived event IDs make reprocessing harmless: a cause processed again (after a crash, from a restored
/// database, or on replay) publishes the very same events, which consumers then drop as duplicates.
struct ReprocessingTests {
    /// A placement that payment-service authorizes and that takes product-10 to its reorder point, so inventory-service
    /// emits a reservation per line and a restock.
    static let placement: ConsumedMessage = {
        let scarce = Catalogue.standard.product("product-10")!
        let plain = Catalogue.standard.product("product-1")!
        let customer = (1...1000).map { "customer-\($0)" }.first { !CreditPolicy.standard.isLowLimit($0) }!
        let lines = [
            OrderLine(productId: plain.productId, quantity: 2, unitPriceCents: plain.unitPriceCents),
            OrderLine(productId: scarce.productId, quantity: scarce.initialStock - scarce.reorderPoint, unitPriceCents: scarce.unitPriceCents),
        ]
        let order = OrderPlaced(orderId: "ord-replayed", customerId: customer, lines: lines,
                                totalCents: lines.reduce(0) { $0 + $1.quantity * $1.unitPriceCents }, currency: "EUR")
        let envelope = Envelope(eventId: "0b6c1f3e-5a2d-4c8b-9e7f-1a2b3c4d5e6f", key: customer, sequence: 1, correlationId: order.orderId,
                                causationId: nil, occurredAt: Timestamp.now(), source: "order-service", event: .orderPlaced(order))
        let message = try! Wire.message(for: envelope, traceparent: nil)
        return ConsumedMessage(topic: message.topic, partition: 0, offset: 0, key: message.key, value: message.value, headers: message.headers)
    }()

    /// What a service in a fresh database emits for the placement: every outbox row, decoded.
    private func emitted<Handler: EventHandler>(by handler: Handler, source: String, migrations: @escaping (inout DatabaseMigrator) -> Void) throws -> [Envelope] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-reprocess-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try ServiceDatabase.open(at: directory.appendingPathComponent("\(source).sqlite").path, migrations: migrations)
        let processor = BatchProcessor(handler: handler, group: source, source: source, logger: Logger(label: "test"))
        let outcome = try database.write { db in try processor.process([Self.placement], in: db) }
        #expect(outcome.applied == 1)
        return try database.read { db in
            try OutboxRow.order(Column("id")).fetchAll(db).map { row in
                let message = row.message
                return try Wire.decode(ConsumedMessage(topic: message.topic, partition: 0, offset: 0, key: message.key, value: message.value, headers: message.headers))
            }
        }
    }

    private func expectIdentical(_ first: [Envelope], _ second: [Envelope]) {
        #expect(first.count == second.count)
        for (a, b) in zip(first, second) {
            #expect(a.eventId == b.eventId)
            #expect(a.type == b.type && a.key == b.key && a.sequence == b.sequence)
            #expect(a.event == b.event, "payloads differ: \(a.event) vs \(b.event)")
            #expect(a.causationId == Self.placement.header("event-id"))
        }
    }

    @Test func paymentServiceEmitsTheSameAuthorizationTwice() throws {
        let first = try emitted(by: PaymentHandler(credit: .standard), source: "payment-service", migrations: PaymentSchema.migrate)
        let second = try emitted(by: PaymentHandler(credit: .standard), source: "payment-service", migrations: PaymentSchema.migrate)
        #expect(first.map(\.type) == [.paymentAuthorized])
        #expect(first.first?.eventId == EventID.derived(source: "payment-service", causationId: "0b6c1f3e-5a2d-4c8b-9e7f-1a2b3c4d5e6f", index: 0))
        expectIdentical(first, second)
    }

    @Test func inventoryServiceEmitsTheSameReservationsAndRestockTwice() throws {
        let first = try emitted(by: InventoryHandler(catalogue: .standard), source: "inventory-service", migrations: InventorySchema.migrate)
        let second = try emitted(by: InventoryHandler(catalogue: .standard), source: "inventory-service", migrations: InventorySchema.migrate)
        #expect(first.map(\.type) == [.stockReserved, .stockReserved, .stockRestocked])
        expectIdentical(first, second)
    }
}
