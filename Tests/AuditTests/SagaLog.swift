import Catalogue
import DomainEvents
import Foundation
import Kafka
import ServiceRuntime
@testable import Emporium

/// A small, hand-written shop history as the topics would hold it: each step is one event, written by its
/// service, caused by an earlier step (or by an HTTP request). Tests take the clean history, break exactly one
/// invariant, and expect the audit to name it.
struct SagaLog {
    struct Step {
        var event: DomainEvent
        var source: String
        /// The index of the step that caused this one; nil for an HTTP request.
        var cause: Int?
        /// Overrides for tests that break sequences and IDs.
        var sequence: Int64?
        var eventId: String?
        var partition: Int32?
        /// A step the service never took: it stays, so the indexes of later steps' causes still hold.
        var dropped = false
    }

    static let partitions: Int32 = 4
    var steps: [Step] = []
    var emailFiles: [String] = []

    /// A customer on a high limit, one on a low limit, and products with known stock.
    static let richCustomer = (1...1000).map { "customer-\($0)" }.first { !CreditPolicy.standard.isLowLimit($0) }!
    static let poorCustomer = (1...1000).map { "customer-\($0)" }.first { CreditPolicy.standard.isLowLimit($0) }!
    static let plentiful = Catalogue.standard.product("product-1")!
    static let scarce = Catalogue.standard.product("product-10")!

    /// Three orders that end each way the saga allows, and a restock:
    /// - order-a is confirmed and captured, and its reservation takes the scarce product to its reorder point,
    ///   so the warehouse restocks it;
    /// - order-b is authorized, short of stock, cancelled and refunded;
    /// - order-c does not fit the poor customer's credit: declined, its reserved line released.
    static var clean: SagaLog {
        var log = SagaLog()
        let rich = richCustomer, poor = poorCustomer
        let drain = scarce.initialStock - scarce.reorderPoint
        let a = log.place("order-a", rich, [OrderLine(productId: scarce.productId, quantity: drain, unitPriceCents: scarce.unitPriceCents)])
        let aAuthorized = log.add(.paymentAuthorized(PaymentAuthorized(orderId: "order-a", customerId: rich, paymentId: "pay-a", amountCents: log.total(a), currency: "EUR")), by: "payment-service", cause: a)
        let aReserved = log.add(.stockReserved(StockReserved(productId: scarce.productId, orderId: "order-a", quantity: drain, available: scarce.reorderPoint, lineCount: 1)), by: "inventory-service", cause: a)
        log.add(.stockRestocked(StockRestocked(productId: scarce.productId, quantity: drain, available: scarce.initialStock)), by: "inventory-service", cause: a)
        _ = aAuthorized
        let aConfirmed = log.add(.orderConfirmed(OrderConfirmed(orderId: "order-a", customerId: rich, totalCents: log.total(a))), by: "order-service", cause: aReserved)
        log.add(.paymentCaptured(PaymentCaptured(orderId: "order-a", customerId: rich, paymentId: "pay-a", amountCents: log.total(a), currency: "EUR")), by: "payment-service", cause: aConfirmed)
        log.notify("order-a", rich, .orderConfirmed, cause: aConfirmed)

        let tooMany = scarce.initialStock + 1
        let b = log.place("order-b", rich, [OrderLine(productId: scarce.productId, quantity: tooMany, unitPriceCents: scarce.unitPriceCents)])
        log.add(.paymentAuthorized(PaymentAuthorized(orderId: "order-b", customerId: rich, paymentId: "pay-b", amountCents: log.total(b), currency: "EUR")), by: "payment-service", cause: b)
        let bShort = log.add(.stockShortage(StockShortage(productId: scarce.productId, orderId: "order-b", requested: tooMany, available: scarce.initialStock)), by: "inventory-service", cause: b)
        let bCancelled = log.add(.orderCancelled(OrderCancelled(orderId: "order-b", customerId: rich, reason: .outOfStock, detail: "short")), by: "order-service", cause: bShort)
        log.add(.paymentRefunded(PaymentRefunded(orderId: "order-b", customerId: rich, paymentId: "pay-b", amountCents: log.total(b), currency: "EUR")), by: "payment-service", cause: bCancelled)
        log.notify("order-b", rich, .orderCancelled, cause: bCancelled)

        let limit = CreditPolicy.standard.limitCents(for: poor)
        let quantity = limit / plentiful.unitPriceCents + 1
        let c = log.place("order-c", poor, [OrderLine(productId: plentiful.productId, quantity: quantity, unitPriceCents: plentiful.unitPriceCents)])
        let cDeclined = log.add(.paymentDeclined(PaymentDeclined(orderId: "order-c", customerId: poor, reason: "insufficient-credit")), by: "payment-service", cause: c)
        log.add(.stockReserved(StockReserved(productId: plentiful.productId, orderId: "order-c", quantity: quantity, available: plentiful.initialStock - quantity, lineCount: 1)), by: "inventory-service", cause: c)
        let cCancelled = log.add(.orderCancelled(OrderCancelled(orderId: "order-c", customerId: poor, reason: .paymentDeclined, detail: "insufficient-credit")), by: "order-service", cause: cDeclined)
        log.add(.stockReleased(StockReleased(productId: plentiful.productId, orderId: "order-c", quantity: quantity, available: plentiful.initialStock)), by: "inventory-service", cause: cCancelled)
        log.notify("order-c", poor, .orderCancelled, cause: cCancelled)
        return log
    }

    @discardableResult
    mutating func add(_ event: DomainEvent, by source: String, cause: Int?) -> Int {
        steps.append(Step(event: event, source: source, cause: cause))
        return steps.count - 1
    }

    mutating func place(_ orderId: String, _ customer: String, _ lines: [OrderLine]) -> Int {
        let total = lines.reduce(0) { $0 + $1.quantity * $1.unitPriceCents }
        return add(.orderPlaced(OrderPlaced(orderId: orderId, customerId: customer, lines: lines, totalCents: total, currency: "EUR")), by: "order-service", cause: nil)
    }

    mutating func notify(_ orderId: String, _ customer: String, _ kind: NotificationKind, cause: Int) {
        add(.notificationSent(NotificationSent(notificationId: "ntf-\(orderId)", orderId: orderId, customerId: customer, kind: kind, channel: "email", messageId: "<\(orderId)>")), by: "notification-service", cause: cause)
        emailFiles.append("\(orderId).\(kind.rawValue).eml")
    }

    func total(_ step: Int) -> Int {
        guard case .orderPlaced(let order) = steps[step].event else { return 0 }
        return order.totalCents
    }

    /// The steps as the topics hold them, and the databases and mail directory as the services left them.
    var input: AuditInput {
        var ids: [String] = []
        var emittedPerCause: [String: Int] = [:]
        var sequences: [String: Int64] = [:]
        var offsets: [TopicPartition: Int64] = [:]
        var log: [Topic: [ConsumedMessage]] = [:]
        for (index, step) in steps.enumerated() {
            let event = step.event
            let id: String
            if let cause = step.cause {
                let causeId = ids[cause]
                let place = emittedPerCause["\(step.source)/\(causeId)", default: 0]
                if !step.dropped { emittedPerCause["\(step.source)/\(causeId)"] = place + 1 }
                id = step.eventId ?? EventID.derived(source: step.source, causationId: causeId, index: place)
            } else {
                id = step.eventId ?? EventID.uuid5(name: "request/\(index)")
            }
            ids.append(id)
            guard !step.dropped else { continue }
            let sequenceKey = "\(event.topic.name)/\(event.key)"
            let sequence = step.sequence ?? (sequences[sequenceKey, default: 0] &+ 1)
            sequences[sequenceKey] = sequence
            let envelope = Envelope(
                eventId: id, key: event.key, sequence: sequence, correlationId: event.correlationId,
                causationId: step.cause.map { ids[$0] }, occurredAt: "2026-11-30T12:00:00.000Z", source: step.source, event: event)
            let message = try! Wire.message(for: envelope, traceparent: nil)
            let partition = step.partition ?? Murmur2.partition(for: message.key!, partitionCount: Self.partitions)
            let topicPartition = TopicPartition(event.topic.name, partition)
            let offset = offsets[topicPartition, default: 0]
            offsets[topicPartition] = offset + 1
            log[event.topic, default: []].append(ConsumedMessage(
                topic: message.topic, partition: partition, offset: offset, key: message.key, value: message.value, headers: message.headers))
        }
        return AuditInput(log: log, deadLetters: [], partitions: Dictionary(uniqueKeysWithValues: Topic.allCases.map { ($0.name, Self.partitions) }),
                          stock: finalStock, holds: [:], emailFiles: emailFiles)
    }

    /// Where inventory-service's stock ends: the last movement's `available` per product.
    var finalStock: [String: Int] {
        var stock: [String: Int] = [:]
        for step in steps where !step.dropped {
            switch step.event {
            case .stockReserved(let e): stock[e.productId] = e.available
            case .stockReleased(let e): stock[e.productId] = e.available
            case .stockRestocked(let e): stock[e.productId] = e.available
            default: break
            }
        }
        return stock
    }

    mutating func drop(_ type: EventType, order: String? = nil) {
        steps[index(of: type, order: order)].dropped = true
    }

    func index(of type: EventType, order: String? = nil) -> Int {
        steps.firstIndex { $0.event.type == type && (order == nil || $0.event.correlationId == order) }!
    }
}
