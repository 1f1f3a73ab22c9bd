import Foundation
import Testing
@testable import NotificationService

@Suite struct EmailTests {
    @Test func theDateHeaderIsRFC5322() {
        #expect(Email.rfc5322Date(Date(timeIntervalSince1970: 1_795_400_000)) == "Mon, 23 Nov 2026 02:13:20 +0000")
        #expect(Email.rfc5322Date(Date(timeIntervalSince1970: 0)) == "Thu, 01 Jan 1970 00:00:00 +0000")
    }

    @Test func theMessageIdDerivesFromTheOrderAndOutcome() {
        let email = Email(orderId: "ord-1", customerId: "customer-9", kind: .orderCancelled, subject: "s", body: "b")
        #expect(email.messageId == "<ord-1.order-cancelled@emporium.example>")
        #expect(email.fileName == "ord-1.order-cancelled.eml")
        let lines = email.rfc5322.components(separatedBy: "\r\n")
        #expect(lines.contains("Message-ID: <ord-1.order-cancelled@emporium.example>"))
        #expect(lines.contains("To: <customer-9@customers.emporium.example>"))
        #expect(lines.contains(""), "headers and body are separated by an empty line")
    }
}
