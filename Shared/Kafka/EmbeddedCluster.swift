import CRdKafka
import Foundation

/// librdkafka's mock cluster: brokers on loopback ports that speak enough of Kafka's protocol for Emporium.
/// It keeps data in memory only, has no CreateTopics (its host creates topics) and keeps at most 5 MB per
/// partition. `emporium cluster` hosts one for every local process; tests that inject faults host their own.
///
/// `@unchecked Sendable` is safe because both pointers are set once in `init` and freed in `deinit`, and the
/// mock cluster's API serialises each call onto the cluster's own thread.
public final class EmbeddedCluster: @unchecked Sendable {
    private let client: RdKafkaClient
    private let cluster: OpaquePointer
    public let brokerCount: Int32

    public init(brokers: Int32 = 3) throws {
        client = try RdKafkaClient(type: RD_KAFKA_PRODUCER, properties: ["log_level": "3"])
        guard let cluster = rd_kafka_mock_cluster_new(client.handle, brokers) else {
            throw KafkaError.clientCreationFailed("the mock cluster did not start")
        }
        self.cluster = cluster
        brokerCount = brokers
        disableNagle()
    }

    deinit {
        // Stopping the brokers joins the cluster's thread: not on a Swift concurrency thread (see RdKafkaClient).
        let remains = Remains(cluster: cluster, client: client)
        Thread.detachNewThread { remains.destroy() }
    }

    /// `@unchecked Sendable` is safe because the cluster object is gone: the destroying thread alone holds these.
    private struct Remains: @unchecked Sendable {
        let cluster: OpaquePointer
        let client: RdKafkaClient

        func destroy() {
            rd_kafka_mock_cluster_destroy(cluster)
            withExtendedLifetime(client) {}
        }
    }

    /// `host:port,...` of every broker.
    public var bootstrapServers: String { String(cString: rd_kafka_mock_cluster_bootstraps(cluster)) }

    public func createTopic(_ topic: TopicSpec) throws {
        let code = rd_kafka_mock_topic_create(cluster, topic.name, topic.partitions, topic.replicationFactor)
        if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(code, operation: "create topic \(topic.name)") }
    }

    /// Takes a broker (IDs 1...brokerCount) off the network: connections to it fail until `setBrokerUp`.
    public func setBrokerDown(_ id: Int32) throws {
        let code = rd_kafka_mock_broker_set_down(cluster, id)
        if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(code, operation: "set broker \(id) down") }
    }

    public func setBrokerUp(_ id: Int32) throws {
        let code = rd_kafka_mock_broker_set_up(cluster, id)
        if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(code, operation: "set broker \(id) up") }
        // A broker that comes back listens on a new socket.
        disableNagle()
    }

    /// Makes `broker` the leader of one partition, as a controller would after a failure.
    public func setLeader(of topic: String, partition: Int32, to broker: Int32) throws {
        let code = rd_kafka_mock_partition_set_leader(cluster, topic, partition, broker)
        if code != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError.from(code, operation: "move the leader of \(topic)[\(partition)] to broker \(broker)")
        }
    }

    /// Makes `broker` the coordinator of consumer group `group`. Unset, the cluster picks one by hashing the
    /// group's name, so a test that takes a group's coordinator away names it here.
    public func setCoordinator(ofGroup group: String, to broker: Int32) throws {
        let code = rd_kafka_mock_coordinator_set(cluster, "group", group, broker)
        if code != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError.from(code, operation: "make broker \(broker) the coordinator of group \(group)")
        }
    }

    public func setAllBrokersDown() throws {
        for id in 1...brokerCount { try setBrokerDown(id) }
    }

    public func setAllBrokersUp() throws {
        for id in 1...brokerCount { try setBrokerUp(id) }
    }
}

// MARK: - Replies without Nagle's delay

extension EmbeddedCluster {
    /// The ports the brokers listen on.
    var brokerPorts: Set<UInt16> {
        Set(bootstrapServers.split(separator: ",").compactMap { $0.split(separator: ":").last.flatMap { UInt16($0) } })
    }

    /// Sets `TCP_NODELAY` on the brokers' listening sockets, which every connection they accept inherits.
    ///
    /// Kafka's brokers set it on every connection; librdkafka's mock does not. Without it, when a client has
    /// several requests in flight on one connection (a producer sends one Produce request per partition), the
    /// mock's second reply waits in the kernel for the client to acknowledge the first, and the client delays
    /// that acknowledgement by up to 40 ms: a batch of ten messages over twelve partitions took 40 ms to be
    /// acknowledged instead of 2 ms. The mock has no option for it, so its host finds the sockets among its own
    /// file descriptors (listening, bound to a broker's port) and sets it there.
    func disableNagle() {
        let ports = brokerPorts
        guard let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for descriptor in descriptors.compactMap(Int32.init) {
            guard let port = listeningPort(of: descriptor), ports.contains(port) else { continue }
            var on: Int32 = 1
            setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        }
    }
}

/// The local port of a listening TCP socket, or nil for any other descriptor.
func listeningPort(of descriptor: Int32) -> UInt16? {
    var listening: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    guard getsockopt(descriptor, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0, listening == 1 else { return nil }
    var address = sockaddr_in()
    var addressLength = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &addressLength) }
    }
    guard named == 0, address.sin_family == sa_family_t(AF_INET) else { return nil }
    return UInt16(bigEndian: address.sin_port)
}
