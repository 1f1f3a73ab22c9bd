import CRdKafka
import Foundation

/// Takes a member out of a consumer group by its member ID, as Kafka's static membership does when a restarted
/// instance takes its predecessor's place. The embedded cluster ignores `group.instance.id`, so without this a
/// process killed and restarted at once leaves a dead member behind that the group waits for until its session
/// ends. librdkafka has no call for it, so this speaks the two requests it takes, FindCoordinator v0 and
/// LeaveGroup v0, over a plaintext connection: enough for the embedded cluster, not for a secured one.
public enum GroupMemberRemoval {
    public enum Outcome: Sendable, Equatable {
        case removed
        /// The coordinator does not know the member (its session already ended) or the group.
        case notAMember
    }

    /// Blocks for up to `timeout` per connection; call it off the cooperative pool.
    public static func remove(
        member: String, from group: String, bootstrapServers: String, timeout: Duration = .seconds(2)
    ) throws -> Outcome {
        let coordinator = try findCoordinator(of: group, bootstrapServers: bootstrapServers, timeout: timeout)
        var body = KafkaRequestBody()
        body.append(string: group)
        body.append(string: member)
        var response = try KafkaWireConnection.roundTrip(.leaveGroup, body, to: coordinator.host, port: coordinator.port, timeout: timeout)
        let code = Int32(try response.int16())
        switch code {
        case 0: return .removed
        case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID.rawValue, RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND.rawValue: return .notAMember
        default: throw KafkaError.from(rd_kafka_resp_err_t(rawValue: code), operation: "remove member \(member) from group \(group)")
        }
    }

    private static func findCoordinator(of group: String, bootstrapServers: String, timeout: Duration) throws -> (host: String, port: Int) {
        var lastError: any Error = KafkaError.missingSetting(name: "bootstrap.servers", hint: "no broker to ask for \(group)'s coordinator")
        for server in bootstrapServers.split(separator: ",") {
            guard let colon = server.lastIndex(of: ":"), let port = Int(server[server.index(after: colon)...]) else { continue }
            let host = server[..<colon].trimmingCharacters(in: .whitespaces)
            do {
                var body = KafkaRequestBody()
                body.append(string: group)
                var response = try KafkaWireConnection.roundTrip(.findCoordinator, body, to: host, port: port, timeout: timeout)
                let code = try response.int16()
                guard code == 0 else {
                    throw KafkaError.from(rd_kafka_resp_err_t(rawValue: Int32(code)), operation: "find the coordinator of group \(group)")
                }
                _ = try response.int32()  // node ID
                let coordinatorHost = try response.string()
                return (coordinatorHost, Int(try response.int32()))
            } catch {
                lastError = error
            }
        }
        throw lastError
    }
}

/// A request body in Kafka's wire format: big-endian integers, strings with an int16 length.
struct KafkaRequestBody {
    private(set) var bytes: [UInt8] = []

    mutating func append(int16 value: Int16) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func append(int32 value: Int32) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }

    mutating func append(string: String) {
        let utf8 = Array(string.utf8)
        append(int16: Int16(clamping: utf8.count))
        bytes.append(contentsOf: utf8.prefix(Int(Int16.max)))
    }
}

/// A response body being read; every read checks that the bytes are there.
struct KafkaResponseReader {
    private let bytes: [UInt8]
    private var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func int16() throws -> Int16 { Int16(bitPattern: UInt16(truncatingIfNeeded: try integer(size: 2))) }
    mutating func int32() throws -> Int32 { Int32(bitPattern: UInt32(truncatingIfNeeded: try integer(size: 4))) }

    mutating func string() throws -> String {
        let length = Int(try int16())
        guard length >= 0, position + length <= bytes.count else { throw KafkaError.connection("a response was cut short") }
        defer { position += length }
        return String(decoding: bytes[position..<position + length], as: UTF8.self)
    }

    private mutating func integer(size: Int) throws -> UInt64 {
        guard position + size <= bytes.count else { throw KafkaError.connection("a response was cut short") }
        defer { position += size }
        return bytes[position..<position + size].reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// The requests Emporium sends without librdkafka, by Kafka's API keys.
enum KafkaRequestKind: Int16 {
    case findCoordinator = 10
    case leaveGroup = 13
}

/// One blocking TCP connection to a broker, for one request and its response.
struct KafkaWireConnection {
    private let descriptor: Int32
    private let peer: String

    /// Connects, sends one version-0 request, and returns its response after the correlation ID.
    static func roundTrip(_ kind: KafkaRequestKind, _ body: KafkaRequestBody, to host: String, port: Int, timeout: Duration) throws -> KafkaResponseReader {
        let connection = try KafkaWireConnection(host: host, port: port, timeout: timeout)
        defer { close(connection.descriptor) }
        return try connection.exchange(kind, body)
    }

    private init(host: String, port: Int, timeout: Duration) throws {
        peer = "\(host):\(port)"
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let address = found else {
            throw KafkaError.connection("cannot resolve \(peer)")
        }
        defer { freeaddrinfo(found) }
        let descriptor = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
        guard descriptor >= 0 else { throw KafkaError.connection("no socket for \(peer): \(String(cString: strerror(errno)))") }
        // On Linux the send timeout also bounds connect().
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        guard connect(descriptor, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw KafkaError.connection("cannot connect to \(peer): \(reason)")
        }
        self.descriptor = descriptor
    }

    private func exchange(_ kind: KafkaRequestKind, _ body: KafkaRequestBody) throws -> KafkaResponseReader {
        var request = KafkaRequestBody()
        request.append(int16: kind.rawValue)
        request.append(int16: 0)  // API version
        request.append(int32: 1)  // correlation ID
        request.append(string: "emporium")
        var frame = KafkaRequestBody()
        frame.append(int32: Int32(request.bytes.count + body.bytes.count))
        try send(frame.bytes + request.bytes + body.bytes)
        var header = KafkaResponseReader(try receive(count: 4))
        let size = Int(try header.int32())
        guard (4...1_048_576).contains(size) else { throw KafkaError.connection("\(peer) answered with a frame of \(size) bytes") }
        var response = KafkaResponseReader(try receive(count: size))
        guard try response.int32() == 1 else { throw KafkaError.connection("\(peer) answered another request") }
        return response
    }

    private func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw KafkaError.connection("cannot send to \(peer): \(String(cString: strerror(errno)))") }
            sent += count
        }
    }

    private func receive(count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var received = 0
        while received < count {
            let got = bytes[received...].withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else {
                throw KafkaError.connection(got == 0 ? "\(peer) closed the connection" : "no answer from \(peer): \(String(cString: strerror(errno)))")
            }
            received += got
        }
        return bytes
    }
}
