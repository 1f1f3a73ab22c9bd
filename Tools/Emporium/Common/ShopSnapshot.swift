import AsyncHTTPClient
import DomainEvents
import Foundation
import Kafka
import NIOCore
import ServiceRuntime

/// The shop's services, the consumer group each runs as (by default its name) and the topics it consumes.
enum ShopLayout {
    static let services = ["order-service", "payment-service", "inventory-service", "notification-service"]

    static let consumed: [String: [Topic]] = [
        "order-service": [.payments, .inventory, .notifications],
        "payment-service": [.orders], "inventory-service": [.orders], "notification-service": [.orders],
    ]
}

/// Everything `emporium status` and the console show, read in one go: from Kafka the brokers, each topic's
/// partitions and offsets, each group's committed offsets; from the services' `/status` who owns what.
struct ShopSnapshot: Codable, Sendable {
    /// A partition's log; nil offsets when its leader did not answer.
    struct PartitionState: Codable, Sendable {
        let partition: Int32
        let low: Int64?
        let high: Int64?
        var messages: Int64 { (high ?? 0) - (low ?? 0) }
    }

    struct TopicState: Codable, Sendable {
        let name: String
        let partitions: [PartitionState]
        var messages: Int64 { partitions.reduce(0) { $0 + $1.messages } }
    }

    /// One row of `kafka-consumer-groups --describe`.
    struct GroupPartition: Codable, Sendable {
        let topic: String
        let partition: Int32
        let committed: Int64?
        /// Nil when the partition's leader did not answer.
        let end: Int64?
        /// Nil when either the end or the group's position could not be read.
        let lag: Int64?
        /// The instance that owns the partition right now, by its own `/status`; nil if none says so.
        let owner: String?
    }

    struct GroupState: Codable, Sendable {
        let group: String
        let partitions: [GroupPartition]
        /// The lag of the partitions whose lag is known.
        var lag: Int64 { partitions.reduce(0) { $0 + ($1.lag ?? 0) } }
    }

    struct InstanceState: Codable, Sendable {
        let service: String
        let instance: String
        let url: String
        let status: ServiceStatus?
        let error: String?
    }

    let takenAt: String
    let brokers: [Broker]
    let topics: [TopicState]
    /// Messages per dead-letter topic.
    let deadLetters: [String: Int64]
    let groups: [GroupState]
    let instances: [InstanceState]
    /// What Kafka did not answer for in time (a broker down): the rest of the snapshot is still current.
    let unanswered: [String]

    var totalLag: Int64 { groups.reduce(0) { $0 + $1.lag } }
}

/// Takes snapshots of one shop: its Kafka cluster and the instances it can find.
struct ShopObserver: Sendable {
    let admin: KafkaAdmin
    let varDirectory: String
    /// Instances named on the command line (`--service URL`), beside those found under `<var-dir>/instances`.
    let extraServices: [String]
    let http: HTTPClient

    init(configuration: KafkaConfiguration, varDirectory: String, extraServices: [String]) throws {
        admin = try KafkaAdmin(configuration: configuration)
        self.varDirectory = varDirectory
        self.extraServices = extraServices
        http = HTTPClient(eventLoopGroupProvider: .singleton)
    }

    func shutdown() async {
        try? await http.shutdown()
    }

    func snapshot() async throws -> ShopSnapshot {
        async let brokers = admin.brokers()
        let instances = await instanceStates()
        let topicNames = Topic.allCases.map(\.name)
        let allTopics = topicNames + Topic.allCases.map(\.deadLetterName)
        // The groups' positions are read before the ends they are compared with, so that under load a position
        // never shows past its partition's end.
        let groupOf = Dictionary(uniqueKeysWithValues: ShopLayout.services.map { service in
            (service, instances.first { $0.service == service }?.status?.group ?? service)
        })
        func consumes(_ service: String, _ partition: TopicPartition) -> Bool {
            ShopLayout.consumed[service]!.contains { $0.name == partition.topic }
        }
        let partitions = try await admin.leaders(of: allTopics).keys.sorted()
        // Side by side, each with a short wait: a group whose coordinator is down must not hold up the others.
        let committedByGroup = await withTaskGroup(of: (String, [TopicPartition: Int64]?).self) { tasks in
            for service in ShopLayout.services {
                let group = groupOf[service]!
                let consumed = partitions.filter { consumes(service, $0) }
                tasks.addTask {
                    (group, try? await admin.committedOffsets(group: group, partitions: consumed, timeout: Self.patience))
                }
            }
            var results: [String: [TopicPartition: Int64]] = [:]
            for await (group, committed) in tasks { results[group] = committed }
            return results
        }
        let (offsets, unansweredPartitions) = try await admin.watermarks(of: allTopics, timeout: Self.patience)
        let byTopic = Dictionary(grouping: offsets, by: \.partition.topic)
        let known = Dictionary(uniqueKeysWithValues: offsets.map { ($0.partition, $0) })
        let topics = topicNames.map { name in
            ShopSnapshot.TopicState(name: name, partitions: partitions.filter { $0.topic == name }.map { partition in
                ShopSnapshot.PartitionState(partition: partition.partition, low: known[partition]?.low, high: known[partition]?.high)
            })
        }
        let deadLetters = Dictionary(uniqueKeysWithValues: Topic.allCases.map { topic in
            (topic.deadLetterName, (byTopic[topic.deadLetterName] ?? []).reduce(Int64(0)) { $0 + $1.high - $1.low })
        })
        var owners: [String: [TopicPartition: String]] = [:]
        for instance in instances {
            guard let status = instance.status else { continue }
            for partition in status.partitions { owners[status.group, default: [:]][TopicPartition(partition.topic, partition.partition)] = status.instance }
        }
        var groups: [ShopSnapshot.GroupState] = []
        var unanswered: [String] = []
        if !unansweredPartitions.isEmpty {
            unanswered.append("the leaders of \(unansweredPartitions.count) partitions (\(unansweredPartitions.prefix(4).map(\.description).joined(separator: ", "))\(unansweredPartitions.count > 4 ? ", …" : "")) did not answer within \(Self.patience)")
        }
        for service in ShopLayout.services {
            let group = groupOf[service]!
            let committed = committedByGroup[group]
            if committed == nil {
                unanswered.append("group \(group)'s coordinator did not answer within \(Self.patience): its positions are unknown")
            }
            let rows = partitions.filter { consumes(service, $0) }.map { partition in
                let position = committed?[partition]
                let log = known[partition]
                var lag: Int64?
                if let log, committed != nil {
                    // A partition whose log no longer reaches back to the position lags from its start.
                    lag = max(0, log.high - max(position ?? log.low, log.low))
                }
                return ShopSnapshot.GroupPartition(topic: partition.topic, partition: partition.partition, committed: position,
                                                   end: log?.high, lag: lag, owner: owners[group]?[partition])
            }
            groups.append(ShopSnapshot.GroupState(group: group, partitions: rows))
        }
        return ShopSnapshot(takenAt: Timestamp.now(), brokers: try await brokers, topics: topics, deadLetters: deadLetters,
                            groups: groups, instances: instances, unanswered: unanswered)
    }

    /// How long a snapshot waits for a broker: one that is down is reported, not waited out.
    static let patience = Duration.seconds(2)

    /// Every instance found, with its `/status` or why it could not be read.
    private func instanceStates() async -> [ShopSnapshot.InstanceState] {
        var targets = InstanceRecord.all(varDirectory: varDirectory).map { ($0.service, $0.instance, $0.url) }
        targets += extraServices.map { ("?", $0, $0) }
        return await withTaskGroup(of: ShopSnapshot.InstanceState.self) { group in
            for (service, instance, url) in targets {
                group.addTask {
                    do {
                        let response = try await http.execute(HTTPClientRequest(url: url + "/status"), timeout: .seconds(2))
                        let body = try await response.body.collect(upTo: 1 << 20)
                        let status = try JSONDecoder().decode(ServiceStatus.self, from: Data(body.readableBytesView))
                        return .init(service: status.service, instance: status.instance, url: url, status: status, error: nil)
                    } catch {
                        return .init(service: service, instance: instance, url: url, status: nil, error: "\(error)")
                    }
                }
            }
            var states: [ShopSnapshot.InstanceState] = []
            for await state in group { states.append(state) }
            return states.sorted { $0.instance < $1.instance }
        }
    }
}
