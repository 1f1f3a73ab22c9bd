import Foundation
@testable import Kafka
import Testing

@Suite(.serialized) struct EmbeddedClusterTests {
    /// Replies that wait on Nagle's algorithm stall a producer with several requests in flight by up to 40 ms
    /// (see `EmbeddedCluster.disableNagle`). The connections the brokers accept are in this process, so the test
    /// reads the option on them directly.
    @Test func everyConnectionABrokerAcceptsHasNagleOff() async throws {
        let cluster = try EmbeddedCluster(brokers: 3)
        for port in cluster.brokerPorts.sorted() {
            #expect(try await acceptedConnectionHasNoDelay(port: port), "broker on port \(port)")
        }

        // A broker taken down and brought back listens on a new socket.
        try cluster.setBrokerDown(2)
        try cluster.setBrokerUp(2)
        for port in cluster.brokerPorts.sorted() {
            #expect(try await acceptedConnectionHasNoDelay(port: port), "broker on port \(port) after broker 2 came back")
        }
    }
}

/// Connects to a broker's port and reports whether the broker's side of the connection has `TCP_NODELAY` set.
private func acceptedConnectionHasNoDelay(port: UInt16) async throws -> Bool {
    let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #expect(client >= 0)
    defer { close(client) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    #expect(connected == 0, "connect to \(port): errno \(errno)")
    let clientPort = try #require(socketPort(of: client, peer: false))

    var accepted: Int32?
    try await waitUntil(.seconds(10), "the broker on \(port) accepts the connection") {
        accepted = brokerSide(brokerPort: port, clientPort: clientPort)
        return accepted != nil
    }
    var noDelay: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    #expect(getsockopt(try #require(accepted), Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, &length) == 0)
    return noDelay != 0
}

/// This process's descriptor for the broker's end of the connection from `clientPort`.
private func brokerSide(brokerPort: UInt16, clientPort: UInt16) -> Int32? {
    let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return descriptors.compactMap(Int32.init).first { descriptor in
        socketPort(of: descriptor, peer: false) == brokerPort && socketPort(of: descriptor, peer: true) == clientPort
    }
}

/// The local (or the peer's) port of an IPv4 socket.
private func socketPort(of descriptor: Int32, peer: Bool) -> UInt16? {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let result = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            peer ? getpeername(descriptor, $0, &length) : getsockname(descriptor, $0, &length)
        }
    }
    guard result == 0, address.sin_family == sa_family_t(AF_INET) else { return nil }
    return UInt16(bigEndian: address.sin_port)
}
