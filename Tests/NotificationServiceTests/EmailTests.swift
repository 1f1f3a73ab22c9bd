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

/// A decline reason travels from payment-service through `OrderCancelled.detail` into the email: whatever it
/// holds must not end the DATA section early or start a header.
@Suite struct SMTPSmugglingTests {
    static let smuggled = "x\n.\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\n.\nQUIT\r.\r"

    @Test func noLineOfTheDataSectionIsALoneDotBeforeTheEnd() {
        let data = SMTPClient.dataSection("Subject: s\r\n\r\n" + Self.smuggled)
        #expect(data.hasSuffix("\r\n"))
        let lines = data.components(separatedBy: "\r\n").dropLast()
        #expect(!lines.contains("."), "a lone dot would end DATA early: \(lines)")
        for line in lines { #expect(!line.contains("\r") && !line.contains("\n"), "a bare line end in \(line.debugDescription)") }
        #expect(lines.contains(".."), "the dot was stuffed")
        #expect(SMTPClient.dataSection("a\r\n.b\r\n") == "a\r\n..b\r\n")
    }

    @Test func anEmailQuotingAHostileReasonHasOnlyCRLFLineEndsAndAOneLineSubject() {
        let email = Email(orderId: "ord-1", customerId: "customer-9", kind: .orderCancelled,
                          subject: "cancelled because \(Self.smuggled)\u{0}\u{1b}", body: "because \(Self.smuggled)\u{0}")
        #expect(!email.subject.unicodeScalars.contains { $0.properties.generalCategory == .control })
        let message = email.rfc5322
        #expect(!message.replacingOccurrences(of: "\r\n", with: "").contains { $0 == "\r" || $0 == "\n" })
        #expect(!message.contains("\u{0}"))
        let headers = message.components(separatedBy: "\r\n\r\n")[0].components(separatedBy: "\r\n")
        #expect(headers.count == 8, "\(headers)")
        #expect(!headers.contains { $0.hasPrefix("MAIL FROM") || $0.hasPrefix("RCPT TO") })
    }

    @Test func aPortOutsideTCPsRangeIsRefusedNotATrap() {
        #expect(SMTPClient(url: "smtp://relay.example:70000") == nil)
        #expect(SMTPClient(url: "smtp://relay.example:2525")?.port == 2525)
    }
}
