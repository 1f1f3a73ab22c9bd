import DomainEvents
import Testing
@testable import PaymentService

extension ListedColumnsTests {
    @Test func paymentServiceRecords() throws {
        try Self.expectFaithful(CustomerCredit(customerId: "customer-3", limitCents: 100_000, heldCents: 2_500), schema: PaymentSchema.migrate)
        var payment = Payment(Self.placed, status: .authorized)
        try Self.expectFaithful(payment, schema: PaymentSchema.migrate)
        payment.status = .refunded
        try Self.expectFaithful(payment, schema: PaymentSchema.migrate)
        try Self.expectFaithful(EndedOrder(orderId: "ord-listed"), schema: PaymentSchema.migrate)
    }
}
