import Testing
@testable import InventoryService

extension ListedColumnsTests {
    @Test func inventoryServiceRecords() throws {
        try Self.expectFaithful(Stock(productId: "product-1", available: 7), schema: InventorySchema.migrate)
        try Self.expectFaithful(Reservation(orderId: "ord-listed", productId: "product-1", quantity: 2, released: true), schema: InventorySchema.migrate)
        try Self.expectFaithful(Shortage(orderId: "ord-listed"), schema: InventorySchema.migrate)
        try Self.expectFaithful(EndedOrder(orderId: "ord-listed"), schema: InventorySchema.migrate)
    }
}
