import Foundation
import Glibc

/// Just enough SMTP (RFC 5321) to hand one message to a relay: EHLO, MAIL, RCPT, DATA, QUIT, no TLS or
/// authentication, for a local relay or a test sink. Blocking: call it off the Swift concurrency threads.
struct SMTPClient {
    let host: String
    let port: UInt16

    /// `smtp://host:port`; the port defaults to 25.
    init?(url: String) {
        guard let components = URLComponents(string: url), components.scheme == "smtp", let host = components.host, !host.isEmpty else { return nil }
        self.host = host
        guard let port = UInt16(exactly: components.port ?? 25) else { return nil }
        self.port = port
    }

    func send(from sender: String, to recipient: String, message: String) throws {
        let connection = try Connection(host: host, port: port)
        defer { connection.close() }
        try connection.expect(220)
        try connection.command("EHLO emporium.local", expect: 250)
        try connection.command("MAIL FROM:<\(sender)>", expect: 250)
        try connection.command("RCPT TO:<\(recipient)>", expect: 250)
        try connection.command("DATA", expect: 354)
        try connection.command(Self.dataSection(message) + ".", expect: 250)
        try? connection.command("QUIT", expect: 221)
    }

    /// The message as DATA carries it (RFC 5321, 4.5.2): every line end, bare LF and bare CR included, made CRLF,
    /// so that no relay, strict or lenient, can see the end of the data (a line of one ".") before the real one;
    /// a line that starts with "." gets another; and a CRLF at the end.
    static func dataSection(_ message: String) -> String {
        let lines = message.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            .split(separator: "\n", omittingEmptySubsequences: false)
        let ended = lines.last == "" ? lines.dropLast() : lines[...]
        return ended.map { $0.hasPrefix(".") ? "." + $0 : String($0) }.map { $0 + "\r\n" }.joined()
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        /// The server's reply code, when it answered with the wrong one.
        var code: Int? = nil

        /// A 5xx reply: the server will never take this message, so sending it again is pointless.
        var isPermanent: Bool { code.map { (500..<600).contains($0) } ?? false }
    }

    private final class Connection {
        private let socket: Int32
        private var buffer: [UInt8] = []

        init(host: String, port: UInt16) throws {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var results: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &results) == 0, let address = results else {
                throw Failure(description: "cannot resolve SMTP host \(host)")
            }
            defer { freeaddrinfo(results) }
            socket = Glibc.socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
            guard socket >= 0 else { throw Failure(description: "cannot open a socket: \(String(cString: strerror(errno)))") }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard connect(socket, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 else {
                let reason = String(cString: strerror(errno))
                Glibc.close(socket)
                throw Failure(description: "cannot connect to SMTP \(host):\(port): \(reason)")
            }
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
