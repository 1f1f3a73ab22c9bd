import DomainEvents
import Foundation
import Kafka
@testable import ServiceRuntime
import Testing
@testable import Emporium

/// Every shop test trusts `emporium audit`; these show that each of its checks can fail. Each test breaks one
/// invariant of a clean history and expects the audit to report exactly that check.
struct AuditTests {
    /// The names of the checks that report violations.
    private func failing(_ log: SagaLog, input: ((inout AuditInput) -> Void)? = nil) -> [String: [String]] {
        var auditInput = log.input
        input?(&auditInput)
        let results = Audit(auditInput).run()
        return Dictionary(uniqueKeysWithValues: results.filter { !$0.violations.isEmpty }.map { ($0.name, $0.violations) })
    }

    private func expectOnly(_ check: String, in failures: [String: [String]], mentioning text: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(failures.keys.count == 1, "expected only '\(check)' to fail, got \(failures)", sourceLocation: sourceLocation)
        let match = failures.first { $0.key.hasPrefix(check) }
        #expect(match != nil, "'\(check)' did not fail: \(failures)", sourceLocation: sourceLocation)
        #expect(match?.value.contains { $0.contains(text) } == true, "\(match?.value ?? [])", sourceLocation: sourceLocation)
    }

    @Test func aCleanHistoryIsClean() {
        let results = Audit(SagaLog.clean.input).run()
        #expect(results.count == 10)
        for result in results { #expect(result.violations.isEmpty, "\(result.line)") }
    }

    @Test func aSequenceGapIsReported() {
        var log = SagaLog.clean
        log.steps[log.index(of: .orderConfirmed)].sequence = 5
        expectOnly("per-key sequences", in: failing(log), mentioning: "then 5")
    }

    @Test func twoEventsOnOneSequenceAreReported() {
        var log = SagaLog.clean
        log.steps[log.index(of: .orderConfirmed)].sequence = 1
        expectOnly("per-key sequences", in: failing(log), mentioning: "two events with sequence 1")
    }

    @Test func anEventInTheWrongPartitionIsReported() {
        var log = SagaLog.clean
        let step = log.index(of: .paymentDeclined)
        let right = Murmur2.partition(for: Array(log.steps[step].event.key.utf8), partitionCount: SagaLog.partitions)
        log.steps[step].partition = (right + 1) % SagaLog.partitions
        expectOnly("every message sits in murmur2", in: failing(log), mentioning: "murmur2 says \(right)")
    }

    @Test func twoTerminalEventsAreReported() {
        var log = SagaLog.clean
        let cancel = log.index(of: .orderCancelled, order: "order-b")
        // order-b is also confirmed after its cancellation, by the same cause; order-service would never do that.
        log.add(.orderConfirmed(OrderConfirmed(orderId: "order-b", customerId: SagaLog.richCustomer, totalCents: log.total(log.index(of: .orderPlaced, order: "order-b")))),
                by: "order-service", cause: log.steps[cancel].cause)
        let failures = failing(log)
        #expect(failures["every placed order has exactly one terminal event"]?.contains("order-b has 2 terminal events") == true, "\(failures)")
    }

    @Test func aConfirmedOrderWithoutItsCaptureIsReported() {
        var log = SagaLog.clean
        log.drop(.paymentCaptured)
        // Without the capture payment-service still holds order-a's total; the holds check agrees with it.
        let failures = failing(log) { $0.holds = [SagaLog.richCustomer: log.total(log.index(of: .orderPlaced, order: "order-a"))] }
        expectOnly("confirmed ⇒", in: failures, mentioning: "order-a: 0 captures")
    }

    @Test func aRefundWithoutAnAuthorizationIsReported() {
        var log = SagaLog.clean
        let cancelled = log.index(of: .orderCancelled, order: "order-c")
        log.add(.paymentRefunded(PaymentRefunded(orderId: "order-c", customerId: SagaLog.poorCustomer, paymentId: "pay-c", amountCents: 100, currency: "EUR")),
                by: "payment-service", cause: cancelled)
        let failures = failing(log)
        #expect(failures.keys.sorted() == ["cancelled ⇒ never captured, refunded once if authorized, every reserved line released once"], "\(failures)")
        #expect(failures.values.first?.contains("order-c: 1 refunds for 0 authorizations") == true)
    }

    @Test func aCancelledOrderThatWasCapturedIsReported() {
        var log = SagaLog.clean
        let cancelled = log.index(of: .orderCancelled, order: "order-b")
        log.drop(.paymentRefunded)
        log.add(.paymentCaptured(PaymentCaptured(orderId: "order-b", customerId: SagaLog.richCustomer, paymentId: "pay-b", amountCents: log.total(log.index(of: .orderPlaced, order: "order-b")), currency: "EUR")),
                by: "payment-service", cause: cancelled)
        expectOnly("cancelled ⇒", in: failing(log), mentioning: "captured though cancelled")
    }

    @Test func anUnreleasedReservationIsReported() {
        var log = SagaLog.clean
        log.drop(.stockReleased)
        // Without the release, inventory-service would have ended lower; the ledger check stays clean.
        let failures = failing(log) { $0.stock = log.finalStock }
        expectOnly("cancelled ⇒", in: failures, mentioning: "order-c: reserved")
    }

    @Test func negativeStockIsReported() {
        var log = SagaLog.clean
        let reserved = log.index(of: .stockReserved, order: "order-c")
        guard case .stockReserved(var event) = log.steps[reserved].event else { Issue.record("not a reservation"); return }
        let overdraw = SagaLog.plentiful.initialStock + 1
        event.quantity = overdraw
        event.available = -1
        log.steps[reserved].event = .stockReserved(event)
        log.steps[log.index(of: .stockReleased)].event = .stockReleased(StockReleased(
            productId: event.productId, orderId: "order-c", quantity: overdraw, available: SagaLog.plentiful.initialStock))
        expectOnly("the inventory ledger", in: failing(log), mentioning: "stock went to -1")
    }

    /// The audit reads logs anyone could have written: numbers at the edge of Int64 are reported, never a trap.
    @Test func aSequenceOfInt64MaxIsReportedNotATrap() {
        var log = SagaLog.clean
        log.steps[log.index(of: .orderConfirmed)].sequence = .max
        let failures = failing(log)
        #expect(failures.first { $0.key.hasPrefix("per-key sequences") }?.value.contains { $0.contains("then \(Int64.max)") } == true, "\(failures)")
        // Int64.min is no sequence at all: that message is not an event.
        log.steps[log.index(of: .orderConfirmed)].sequence = .min
        #expect(failing(log)["every message that is not a valid event was dead-lettered"] != nil)
    }

    @Test func quantitiesAndAmountsAtTheEdgeOfIntAreReportedNotATrap() {
        var log = SagaLog.clean
        let reserved = log.index(of: .stockReserved, order: "order-c")
        guard case .stockReserved(var reservation) = log.steps[reserved].event else { Issue.record("not a reservation"); return }
        reservation.quantity = .min
        log.steps[reserved].event = .stockReserved(reservation)
        let authorized = log.index(of: .paymentAuthorized)
        guard case .paymentAuthorized(var payment) = log.steps[authorized].event else { Issue.record("not an authorization"); return }
        payment.amountCents = .max
        log.steps[authorized].event = .paymentAuthorized(payment)
        let failures = failing(log)
        #expect(failures.keys.contains { $0.hasPrefix("the inventory ledger") }, "\(failures)")
        #expect(failures.keys.contains { $0.hasPrefix("open holds") }, "\(failures)")
    }

    @Test func aLedgerThatDoesNotReplayIsReported() {
        var log = SagaLog.clean
        let restock = log.index(of: .stockRestocked)
        guard case .stockRestocked(var event) = log.steps[restock].event else { Issue.record("not a restock"); return }
        event.available += 1
        log.steps[restock].event = .stockRestocked(event)
        let failures = failing(log) { $0.stock = log.finalStock }
        expectOnly("the inventory ledger", in: failures, mentioning: "expected \(event.available - 1)")
    }

    @Test func aLedgerThatDisagreesWithInventoryServiceIsReported() {
        let failures = failing(SagaLog.clean) { $0.stock[SagaLog.scarce.productId, default: 0] += 1 }
        expectOnly("the inventory ledger", in: failures, mentioning: "inventory-service has")
    }

    @Test func holdsOverTheLimitAreReported() {
        var log = SagaLog.clean
        // The poor customer's order that did not fit is authorized anyway (and so confirmed and captured).
        let declined = log.index(of: .paymentDeclined)
        let placed = log.index(of: .orderPlaced, order: "order-c")
        log.steps[declined].event = .paymentAuthorized(PaymentAuthorized(
            orderId: "order-c", customerId: SagaLog.poorCustomer, paymentId: "pay-c", amountCents: log.total(placed), currency: "EUR"))
        let failures = failing(log) { $0.holds = [SagaLog.poorCustomer: log.total(placed)] }
        #expect(failures["open holds stay within each customer's credit and match payment-service"]?.contains { $0.contains("holds reach") } == true, "\(failures)")
    }

    @Test func aDeclineWithRoomIsReported() {
        var log = SagaLog.clean
        let placed = log.index(of: .orderPlaced, order: "order-c")
        guard case .orderPlaced(var order) = log.steps[placed].event else { Issue.record("not a placement"); return }
        order.totalCents = 1
        log.steps[placed].event = .orderPlaced(order)
        expectOnly("open holds", in: failing(log), mentioning: "declined though 0 + 1 fits")
    }

    @Test func holdsThatDisagreeWithPaymentServiceAreReported() {
        let failures = failing(SagaLog.clean) { $0.holds = [SagaLog.richCustomer: 100] }
        expectOnly("open holds", in: failures, mentioning: "payment-service holds 100")
    }

    @Test func aSecondEmailIsReported() {
        var log = SagaLog.clean
        let confirmed = log.index(of: .orderConfirmed)
        log.notify("order-a", SagaLog.richCustomer, .orderConfirmed, cause: confirmed)
        let failures = failing(log)
        expectOnly("exactly one NotificationSent", in: failures, mentioning: "order-a: 2 notifications")
        #expect(failures.values.first?.contains("order-a: 2 emails") == true)
    }

    @Test func anEventIdNotDerivedFromItsCauseIsReported() {
        var log = SagaLog.clean
        let captured = log.index(of: .paymentCaptured)
        log.steps[captured].eventId = EventID.random()
        expectOnly("every caused event carries the ID derived", in: failing(log), mentioning: "PaymentCaptured")
    }

    @Test func aMessageThatIsNotAnEventAndWasNotDeadLetteredIsReported() {
        let failures = failing(SagaLog.clean) { input in
            input.log[.orders, default: []].append(ConsumedMessage(topic: "orders", partition: 0, offset: 99, key: Array("k".utf8), value: Array("junk".utf8)))
        }
        #expect(failures["every message that is not a valid event was dead-lettered"]?.first?.contains("orders[0]@99") == true, "\(failures)")
    }
}

/// Derived event IDs (docs/contract.md, "Envelope") against values computed by another UUID v5 implementation
/// (Python's `uuid.uuid5` in the same namespace).
struct EventIDTests {
    @Test func derivedIDsMatchAnIndependentUUIDv5() {
        #expect(EventID.derived(source: "payment-service", causationId: "3b1f5a0c-2d4e-4f60-8a7b-9c0d1e2f3a4b", index: 0)
            == "27059203-dfe4-578a-8df9-b9692b3e6f9c")
        #expect(EventID.derived(source: "inventory-service", causationId: "3b1f5a0c-2d4e-4f60-8a7b-9c0d1e2f3a4b", index: 2)
            == "aa3c4524-a6f0-5b77-b907-f9e11e43ccd4")
    }

    @Test func randomIDsAreVersion4() {
        let id = EventID.random()
        #expect(UUID(uuidString: id) != nil && Array(id)[14] == "4")
    }
}

/// The hand-written SHA-1 behind version 5 UUIDs, against FIPS 180 vectors (also Python's hashlib).
struct SHA1Tests {
    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test func oneBlockAndManyBlocks() {
        #expect(hex(SHA1.digest(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(SHA1.digest(Array(repeating: UInt8(ascii: "a"), count: 1000))) == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
        #expect(hex(SHA1.digest([])) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    }
}
