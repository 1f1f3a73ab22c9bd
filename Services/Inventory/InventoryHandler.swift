import Catalogue
import DomainEvents
import GRDB
import ServiceRuntime

/// inventory-service's reactions (docs/contract.md, saga step 3): reserve every line of a placed order or none,
/// and release what it reserved for an order that is cancelled. Stock never goes below zero. The warehouse
/// replenishes: a reservation that leaves a product at or below its reorder point restocks it to its initial
/// level in the same transaction, announced right after that reservation.
struct InventoryHandler: EventHandler {
    let catalogue: Catalogue
    let handledTypes: Set<EventType> = [.orderPlaced, .orderCancelled]

    func handle(_ envelope: Envelope, in db: Database) throws -> [DomainEvent] {
        switch envelope.event {
        case .orderPlaced(let order):
            guard try !Reservation.exists(db, where: "orderId", is: order.orderId),
                  try !Shortage.exists(db, where: "orderId", is: order.orderId),
                  try !EndedOrder.exists(db, where: "orderId", is: order.orderId) else { return [] }
            let stock = try order.lines.map { line in (line, try Stock.fetchOne(db, where: "productId", is: line.productId)?.available ?? 0) }
            let short = stock.filter { line, available in available < line.quantity }
            guard short.isEmpty else {
                try Shortage(orderId: order.orderId).insertCached(db)
                return short.map { line, available in
                    .stockShortage(StockShortage(productId: line.productId, orderId: order.orderId, requested: line.quantity, available: available))
                }
            }
            return try stock.flatMap { line, available in
                let left = available - line.quantity
                try Stock(productId: line.productId, available: left).updateCached(db, key: "productId")
                try Reservation(orderId: order.orderId, productId: line.productId, quantity: line.quantity, released: false).insertCached(db)
                let reserved = DomainEvent.stockReserved(StockReserved(
                    productId: line.productId, orderId: order.orderId, quantity: line.quantity, available: left, lineCount: order.lines.count))
                guard let product = catalogue.product(line.productId), left <= product.reorderPoint else { return [reserved] }
                let quantity = product.initialStock - left
                let restocked = try Stock.release(quantity, of: line.productId, in: db)
                return [reserved, .stockRestocked(StockRestocked(productId: line.productId, quantity: quantity, available: restocked))]
            }

        case .orderCancelled(let cancellation):
            let held = try Reservation.held(for: cancellation.orderId, in: db)
            if try !Reservation.exists(db, where: "orderId", is: cancellation.orderId) {
                try EndedOrder(orderId: cancellation.orderId).upsertCached(db, key: "orderId")
            }
            return try held.map { reservation in
                try reservation.markReleased(in: db)
                let available = try Stock.release(reservation.quantity, of: reservation.productId, in: db)
                return .stockReleased(StockReleased(
                    productId: reservation.productId, orderId: reservation.orderId, quantity: reservation.quantity, available: available))
            }

        default:
            return []
        }
    }
}
