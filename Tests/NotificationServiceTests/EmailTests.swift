import Foundation
import Glibc
import Testing
import TestSupport
import MailFormat
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
        let data = MailText.dataSection("Subject: s\r\n\r\n" + Self.smuggled)
        #expect(data.hasSuffix("\r\n"))
        let lines = data.components(separatedBy: "\r\n").dropLast()
        #expect(!lines.contains("."), "a lone dot would end DATA early: \(lines)")
        for line in lines { #expect(!line.contains("\r") && !line.contains("\n"), "a bare line end in \(line.debugDescription)") }
        #expect(lines.contains(".."), "the dot was stuffed")
        #expect(MailText.dataSection("a\r\n.b\r\n") == "a\r\n..b\r\n")
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

@Suite struct SMTPTimeoutTests {
    /// A listener whose accept queue is full drops new connection attempts, as a black-holed relay does: the
    /// client gives up within its timeout instead of the kernel's two minutes.
    @Test func aRelayThatNeverAnswersIsGivenUpOnWithinTheTimeout() async throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        #expect(listen(listener, 0) == 0)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        let port = UInt16(bigEndian: address.sin_port)
        // Never accepted: these fill the queue.
        var fillers: [Int32] = []
        defer { fillers.forEach { close($0) } }
        for _ in 0..<4 {
            let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            _ = fcntl(filler, F_SETFL, fcntl(filler, F_GETFL) | O_NONBLOCK)
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(filler, $0, length) } }
            fillers.append(filler)
        }
        var client = try #require(SMTPClient(url: "smtp://127.0.0.1:\(port)"))
        client.timeout = .seconds(1)
        let failure = try await within(.seconds(15), "the send gives up") { [client] in
            await Task.detached { () -> String? in
                do {
                    try client.send(from: "a@example.com", to: "b@example.com", message: "Subject: s\r\n\r\nbody\r\n")
                    return nil
                } catch {
                    return "\(error)"
                }
            }.value
        }
        #expect(failure != nil, "a relay that never answered took the message")
    }
}
