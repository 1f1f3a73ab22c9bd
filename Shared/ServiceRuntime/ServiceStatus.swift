import Foundation
import GRDB
import Kafka
import Metrics

/// `GET /status`: what one instance is doing right now. Kafka's own tools describe a group from the broker;
/// the embedded cluster cannot, so each member says which partitions it owns, and `emporium status` puts the
/// members' answers together.
public struct ServiceStatus: Codable, Sendable {
    public struct Partition: Codable, Sendable, Hashable {
        public let topic: String
        public let partition: Int32
        /// Messages not yet handed to this member, as its consumer last saw the log's end; nil before its first fetch.
        public let lag: Int64?
    }

    public let service: String
    public let instance: String
    public let pid: Int
    public let group: String
    /// This instance's member ID in its group, as the coordinator gave it; nil before its first join.
    public let memberId: String?
    public let partitions: [Partition]
    public let lastBatchAt: String?
    public let outboxDepth: Int
    public let relayLeaseHolder: Bool
    public let relayed: Int
    /// Messages this instance consumed since it started, and what became of them.
    public let handled: HandledCounts

    public init(_ context: ServiceContext) async throws {
        let settings = context.settings
        service = settings.service
        instance = settings.instanceID
        pid = Int(getpid())
        group = settings.group
        memberId = context.consumer.memberID
        let lag = context.consumer.lag()
        partitions = context.consumer.assigned.map { Partition(topic: $0.topic, partition: $0.partition, lag: lag[$0]) }
        lastBatchAt = context.consumer.lastBatchAt
        outboxDepth = try await context.database.read(Outbox.pendingCount)
        relayLeaseHolder = context.relay.holdsLease
        relayed = context.relay.deliveredCount
        handled = context.consumer.handled
    }

    /// Sets the gauges that are read rather than recorded: outbox depth and per-partition lag.
    static func refreshGauges(_ context: ServiceContext) async throws {
        Gauge(label: "emporium_outbox_depth_rows").record(try await context.database.read(Outbox.pendingCount))
        for (partition, lag) in context.consumer.lag() {
            Gauge(label: "emporium_consumer_lag_messages", dimensions: [("topic", partition.topic), ("partition", String(partition.partition))])
                .record(lag)
        }
    }
}

/// Where a running instance can be reached: each writes `<var-dir>/instances/<instance-id>.json` when it starts
/// and removes it when it stops, so `emporium status` and the console find every instance of a local shop.
public struct InstanceRecord: Codable, Sendable {
    public let service: String
    public let instance: String
    public let pid: Int32
    public let url: String

    public static func directory(varDirectory: String) -> String { "\(varDirectory)/instances" }

    /// The records of instances whose process is still alive.
    public static func all(varDirectory: String) -> [InstanceRecord] {
        let directory = directory(varDirectory: varDirectory)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.filter { $0.hasSuffix(".json") }.compactMap { file in
            guard let data = FileManager.default.contents(atPath: "\(directory)/\(file)"),
                  let record = try? JSONDecoder().decode(InstanceRecord.self, from: data), kill(record.pid, 0) == 0 else { return nil }
            return record
        }.sorted { $0.instance < $1.instance }
    }

    func write(varDirectory: String) throws -> String {
        let directory = Self.directory(varDirectory: varDirectory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = "\(directory)/\(instance).json"
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
        return path
    }
}
