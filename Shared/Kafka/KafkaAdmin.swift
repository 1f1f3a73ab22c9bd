import CRdKafka
import Foundation
import Synchronization

/// A topic to create: name, partition count, replication factor.
public struct TopicSpec: Sendable, Hashable {
    public let name: String
    public let partitions: Int32
    public let replicationFactor: Int32

    public init(name: String, partitions: Int32, replicationFactor: Int32) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
    }
}

/// Where a partition's log starts and ends, and what a group has committed in it.
public struct PartitionOffsets: Sendable, Hashable {
    public let partition: TopicPartition
    /// The oldest offset still in the log.
    public let low: Int64
    /// The offset the next message will get.
    public let high: Int64
    /// The group's committed offset, nil if it has none.
    public let committed: Int64?

    /// Messages the group has yet to process; everything in the log if it never committed.
    public var lag: Int64 { high - max(committed ?? low, low) }
}

/// A broker of the cluster.
public struct Broker: Sendable, Hashable, Codable {
    public let id: Int32
    public let host: String
    public let port: Int32
}

/// Cluster-level requests: topic creation, metadata, watermarks, committed offsets.
/// Each call blocks on librdkafka, so each runs on a spare thread.
public final class KafkaAdmin: Sendable {
    private let client: RdKafkaClient
    private let configuration: KafkaConfiguration
    private let timeoutMilliseconds: Int32 = 10_000
    /// Leaders whose watermark queries are under way.
    private let leadersAsked = Mutex<Set<Int32>>([])

    public init(configuration: KafkaConfiguration) throws {
        self.configuration = configuration
        client = try RdKafkaClient(type: RD_KAFKA_PRODUCER, properties: configuration.plainProperties())
    }

    /// Creates the topics through the Admin API. A topic that already exists counts as created.
    /// The embedded cluster has no CreateTopics: its host creates the topics itself.
    public func createTopics(_ topics: [TopicSpec]) async throws {
        let client = self.client
        let timeout = timeoutMilliseconds
        try await offloaded {
            var errstr = [CChar](repeating: 0, count: 512)
            var newTopics: [OpaquePointer?] = []
            defer { newTopics.forEach { rd_kafka_NewTopic_destroy($0) } }
            for topic in topics {
                guard let newTopic = rd_kafka_NewTopic_new(topic.name, topic.partitions, topic.replicationFactor, &errstr, errstr.count) else {
                    throw KafkaError.invalidProperty(name: "topic \(topic.name)", message: errstr.nulTerminatedString)
                }
                newTopics.append(newTopic)
            }
            let queue = rd_kafka_queue_new(client.handle)
            defer { rd_kafka_queue_destroy(queue) }
            let options = rd_kafka_AdminOptions_new(client.handle, RD_KAFKA_ADMIN_OP_CREATETOPICS)
            defer { rd_kafka_AdminOptions_destroy(options) }
            rd_kafka_AdminOptions_set_operation_timeout(options, timeout, &errstr, errstr.count)
            rd_kafka_CreateTopics(client.handle, &newTopics, newTopics.count, options, queue)
            guard let event = rd_kafka_queue_poll(queue, timeout + 5000) else {
                throw KafkaError.from(RD_KAFKA_RESP_ERR__TIMED_OUT, operation: "create topics")
            }
            defer { rd_kafka_event_destroy(event) }
            let code = rd_kafka_event_error(event)
            if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(code, operation: "create topics") }
            var count = 0
            let results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count)
            for index in 0..<count {
                let result = results![index]
                let code = rd_kafka_topic_result_error(result)
                if code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                    throw KafkaError.from(code, operation: "create topic \(String(cString: rd_kafka_topic_result_name(result)))")
                }
            }
        }
    }

    /// Partition counts of the named topics (of all topics if none are named).
    public func partitionCounts(of topics: [String] = []) async throws -> [String: Int32] {
        try await withMetadata(allTopics: true) { metadata in
            var counts: [String: Int32] = [:]
            for index in 0..<Int(metadata.pointee.topic_cnt) {
                let topic = metadata.pointee.topics[index]
                let name = String(cString: topic.topic)
                if (topics.isEmpty || topics.contains(name)) && topic.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    counts[name] = topic.partition_cnt
                }
            }
            return counts
        }
    }

    /// The broker leading each partition of the named topics, as the cluster's metadata says now.
    public func leaders(of topics: [String]) async throws -> [TopicPartition: Int32] {
        try await withMetadata(allTopics: true) { metadata in
            var leaders: [TopicPartition: Int32] = [:]
            for index in 0..<Int(metadata.pointee.topic_cnt) {
                let topic = metadata.pointee.topics[index]
                let name = String(cString: topic.topic)
                guard topics.contains(name) else { continue }
                for partition in 0..<Int(topic.partition_cnt) {
                    leaders[TopicPartition(name, topic.partitions[partition].id)] = topic.partitions[partition].leader
                }
            }
            return leaders
        }
    }

    /// The cluster's brokers, as its metadata lists them.
    public func brokers() async throws -> [Broker] {
        try await withMetadata(allTopics: false) { metadata in
            (0..<Int(metadata.pointee.broker_cnt)).map { index in
                let broker = metadata.pointee.brokers[index]
                return Broker(id: broker.id, host: String(cString: broker.host), port: broker.port)
            }.sorted { $0.id < $1.id }
        }
    }

    /// Reads the cluster's metadata (brokers, and every topic if asked) on a spare thread and hands it to `body`.
    private func withMetadata<T: Sendable>(allTopics: Bool, _ body: @escaping @Sendable (UnsafePointer<rd_kafka_metadata>) -> T) async throws -> T {
        let client = self.client
        let timeout = timeoutMilliseconds
        return try await offloaded {
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let code = rd_kafka_metadata(client.handle, allTopics ? 1 : 0, nil, &metadata, timeout)
            guard code == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError.from(code, operation: "read metadata") }
            defer { rd_kafka_metadata_destroy(metadata) }
            return body(metadata)
        }
    }

    /// Watermarks of every partition of `topics`, with `group`'s committed offsets when a group is named.
    public func offsets(of topics: [String], group: String? = nil) async throws -> [PartitionOffsets] {
        let counts = try await partitionCounts(of: topics)
        let partitions = counts.flatMap { topic, count in (0..<count).map { TopicPartition(topic, $0) } }.sorted()
        let client = self.client
        let timeout = timeoutMilliseconds
        let committed = group == nil ? [:] : try await committedOffsets(group: group!, partitions: partitions)
        return try await offloaded {
            try partitions.map { partition in
                var low: Int64 = 0
                var high: Int64 = 0
                let code = rd_kafka_query_watermark_offsets(client.handle, partition.topic, partition.partition, &low, &high, timeout)
                if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(code, operation: "query watermarks of \(partition)") }
                return PartitionOffsets(partition: partition, low: low, high: high, committed: committed[partition])
            }
        }
    }

    /// Watermarks of every partition of `topics`, asking the leaders side by side: a leader that does not answer
    /// within `timeout` (a broker that is down) leaves its partitions in `unanswered` and holds up nothing else.
    public func watermarks(of topics: [String], timeout: Duration) async throws -> (offsets: [PartitionOffsets], unanswered: [TopicPartition]) {
        let byLeader = Dictionary(grouping: try await leaders(of: topics), by: \.value).mapValues { $0.map(\.key).sorted() }
        return await withTaskGroup(of: ([PartitionOffsets], [TopicPartition]).self) { group in
            for (leader, partitions) in byLeader {
                group.addTask { await self.watermarks(of: partitions, ledBy: leader, timeout: timeout) }
            }
            var offsets: [PartitionOffsets] = []
            var unanswered: [TopicPartition] = []
            for await (answered, missing) in group {
                offsets += answered
                unanswered += missing
            }
            return (offsets.sorted { $0.partition < $1.partition }, unanswered.sorted())
        }
    }

    /// librdkafka's watermark query does not give up at its timeout while the leader is unreachable (it retries
    /// until the broker's state changes), so each leader's queries run on a thread of their own, the answer is
    /// not waited for past `timeout`, and a leader still busy with an earlier query is not asked again.
    private func watermarks(of partitions: [TopicPartition], ledBy leader: Int32, timeout: Duration) async -> ([PartitionOffsets], [TopicPartition]) {
        guard leadersAsked.withLock({ $0.insert(leader).inserted }) else { return ([], partitions) }
        let client = self.client
        let answer = FirstAnswer<([PartitionOffsets], [TopicPartition])>()
        return await withCheckedContinuation { continuation in
            answer.hold(continuation)
            Thread.detachNewThread { [self] in
                var answered: [PartitionOffsets] = []
                for partition in partitions {
                    var low: Int64 = 0
                    var high: Int64 = 0
                    let code = rd_kafka_query_watermark_offsets(
                        client.handle, partition.topic, partition.partition, &low, &high, timeout.librdkafkaMilliseconds)
                    guard code == RD_KAFKA_RESP_ERR_NO_ERROR else { break }
                    answered.append(PartitionOffsets(partition: partition, low: low, high: high, committed: nil))
                }
                leadersAsked.withLock { _ = $0.remove(leader) }
                answer.give((answered, Array(partitions.dropFirst(answered.count))))
            }
            Task {
                try? await Task.sleep(for: timeout)
                answer.give(([], partitions))
            }
        }
    }

    /// A group's committed offsets, read through a consumer handle of that group that never joins it.
    public func committedOffsets(group: String, partitions: [TopicPartition], timeout: Duration = .seconds(10)) async throws -> [TopicPartition: Int64] {
        let properties = configuration.consumerProperties(group: group)
        let timeout = timeout.librdkafkaMilliseconds
        return try await offloaded {
            let reader = try RdKafkaClient(type: RD_KAFKA_CONSUMER, properties: properties)
            return try withPartitionList(partitions.map { ($0, Int64(RD_KAFKA_OFFSET_INVALID)) }) { list in
                let code = rd_kafka_committed(reader.handle, list, timeout)
                if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError.from(code, operation: "read committed offsets of \(group)") }
                var offsets: [TopicPartition: Int64] = [:]
                for entry in list.entries where entry.offset >= 0 { offsets[entry.partition] = entry.offset }
                return offsets
            }
        }
    }
}

extension Duration {
    /// As librdkafka takes a timeout.
    var librdkafkaMilliseconds: Int32 {
        Int32(clamping: components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }
}

/// Resumes a waiter with the first value given; later ones are dropped.
private final class FirstAnswer<Value: Sendable>: Sendable {
    private let waiter = Mutex<CheckedContinuation<Value, Never>?>(nil)

    func hold(_ continuation: CheckedContinuation<Value, Never>) {
        waiter.withLock { $0 = continuation }
    }

    func give(_ value: Value) {
        waiter.withLock { waiter in
            defer { waiter = nil }
            return waiter
        }?.resume(returning: value)
    }
}
