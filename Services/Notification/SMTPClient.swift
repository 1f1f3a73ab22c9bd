import Foundation
import Glibc
import MailFormat

/// Just enough SMTP (RFC 5321) to hand one message to a relay: EHLO, MAIL, RCPT, DATA, QUIT, no TLS or
/// authentication, for a local relay or a test sink. Blocking: call it off the Swift concurrency threads.
struct SMTPClient: Sendable {
    let host: String
    let port: UInt16
    /// How long connecting, and then each send and each reply, may take: a relay that drops packets must not hold
    /// the mail writer (or a SIGTERM waiting for it) for the kernel's two minutes.
    var timeout: Duration = .seconds(5)

    /// `smtp://host:port`; the port defaults to 25.
    init?(url: String) {
        guard let components = URLComponents(string: url), components.scheme == "smtp", let host = components.host, !host.isEmpty else { return nil }
        self.host = host
        guard let port = UInt16(exactly: components.port ?? 25) else { return nil }
        self.port = port
    }

    func send(from sender: String, to recipient: String, message: String) throws {
        let connection = try Connection(host: host, port: port, timeout: timeout)
        defer { connection.close() }
        try connection.expect(220)
        try connection.command("EHLO emporium.local", expect: 250)
        // From here on a refusal is about this message (its sender, recipient or content), not the relay.
        // A 421 says the relay is closing, whatever was asked.
        do {
            try connection.command("MAIL FROM:<\(sender)>", expect: 250)
            try connection.command("RCPT TO:<\(recipient)>", expect: 250)
            try connection.command("DATA", expect: 354)
            // A relay may scan the content before it answers: a timeout here would send the email again.
            connection.setReplyTimeout(max(timeout, .seconds(60)))
            try connection.command(MailText.dataSection(message) + ".", expect: 250)
        } catch var failure as Failure where failure.code != nil && failure.code != 421 {
            failure.concernsMessage = true
            throw failure
        }
        try? connection.command("QUIT", expect: 221)
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        /// The server's reply code, when it answered with the wrong one.
        var code: Int? = nil
        /// The relay answered about this message (MAIL, RCPT or DATA), so other messages may still go through.
        var concernsMessage = false

        /// A 5xx reply about this message: the relay will never take it, so sending it again is pointless. (A 5xx
        /// to the greeting or EHLO is about the relay, and every email waits for it alike.)
        var isPermanent: Bool { concernsMessage && code.map { (500..<600).contains($0) } ?? false }
    }

    private final class Connection {
        private let socket: Int32
        private var buffer: [UInt8] = []

        init(host: String, port: UInt16, timeout: Duration) throws {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var results: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &results) == 0, let address = results else {
                throw Failure(description: "cannot resolve SMTP host \(host)")
            }
            defer { freeaddrinfo(results) }
            socket = Glibc.socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
            guard socket >= 0 else { throw Failure(description: "cannot open a socket: \(String(cString: strerror(errno)))") }
            var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
            setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            if let reason = Self.connect(socket, to: address.pointee, within: timeout) {
                Glibc.close(socket)
                throw Failure(description: "cannot connect to SMTP \(host):\(port): \(reason)")
            }
        }

        /// `connect` with an end: non-blocking, then waiting for the socket to become writable. Returns why it
        /// failed, or nil once connected (and blocking again, for the reads and writes with their own timeouts).
        private static func connect(_ socket: Int32, to address: addrinfo, within timeout: Duration) -> String? {
            let flags = fcntl(socket, F_GETFL)
            _ = fcntl(socket, F_SETFL, flags | O_NONBLOCK)
            defer { _ = fcntl(socket, F_SETFL, flags) }
            if Glibc.connect(socket, address.ai_addr, address.ai_addrlen) == 0 { return nil }
            guard errno == EINPROGRESS else { return String(cString: strerror(errno)) }
            var descriptor = pollfd(fd: socket, events: Int16(POLLOUT), revents: 0)
            let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
            let ready = poll(&descriptor, 1, milliseconds)
            guard ready > 0 else { return ready == 0 ? "no answer within \(timeout)" : String(cString: strerror(errno)) }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(socket, SOL_SOCKET, SO_ERROR, &error, &length)
            return error == 0 ? nil : String(cString: strerror(error))
        }

        func setReplyTimeout(_ timeout: Duration) {
            var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
            setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        }

        func command(_ line: String, expect code: Int) throws {
            let bytes = Array((line + "\r\n").utf8)
            var sent = 0
            while sent < bytes.count {
                let count = bytes[sent...].withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard count > 0 else { throw Failure(description: "SMTP connection lost while sending") }
                sent += count
            }
            try expect(code)
        }

        /// Reads one reply, multi-line or not, and checks its code.
        func expect(_ code: Int) throws {
            while true {
                let line = try readLine()
                guard line.count >= 3, let received = Int(line.prefix(3)) else { throw Failure(description: "malformed SMTP reply '\(line)'") }
                if line.count > 3 && line[line.index(line.startIndex, offsetBy: 3)] == "-" { continue }
                guard received == code else { throw Failure(description: "SMTP server answered '\(line)', expected \(code)", code: received) }
                return
            }
        }

        private func readLine() throws -> String {
            while true {
                if let end = buffer.firstIndex(of: 0x0a) {
                    let line = String(decoding: buffer[..<end], as: UTF8.self).trimmingCharacters(in: .newlines)
                    buffer.removeSubrange(...end)
                    return line
                }
                var chunk = [UInt8](repeating: 0, count: 1024)
                let count = recv(socket, &chunk, chunk.count, 0)
                guard count > 0 else { throw Failure(description: "SMTP connection closed or timed out") }
                buffer += chunk[..<count]
            }
        }

        func close() {
            Glibc.close(socket)
        }
    }
}
