import AsyncHTTPClient
import Foundation
import Hummingbird
import Kafka
import NIOCore
import ServiceRuntime
import Synchronization

/// The running cluster's fault-injection endpoint: a few POST routes on 127.0.0.1, so that a test, an
/// experiment or a person with curl can break and mend brokers while the shop runs.
final class ClusterControl: Sendable {
    let cluster: EmbeddedCluster
    let partitions: Int32
    let topics: [String]
    private let down = Mutex<Set<Int32>>([])

    init(cluster: EmbeddedCluster, partitions: Int32, topics: [String]) {
        self.cluster = cluster
        self.partitions = partitions
        self.topics = topics
    }

    static func file(varDirectory: String) -> String { varDirectory + "/kafka/control" }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/brokers") { _, _ in
            let down = self.down.withLock { $0 }
            return JSONResponse.make(.ok, (1...self.cluster.brokerCount).map { BrokerView(broker: $0, state: down.contains($0) ? "down" : "up") })
        }
        router.post("/brokers/{id}/{state}") { _, context in
            guard let id = context.parameters.get("id", as: Int32.self), (1...self.cluster.brokerCount).contains(id) else {
                return JSONResponse.error(.notFound, "no such broker: the brokers are 1 to \(self.cluster.brokerCount)", field: "id")
            }
            let state = context.parameters.get("state") ?? ""
            do {
                switch state {
                case "down":
                    try self.cluster.setBrokerDown(id)
                    self.down.withLock { _ = $0.insert(id) }
                case "up":
                    try self.cluster.setBrokerUp(id)
                    self.down.withLock { _ = $0.remove(id) }
                default:
                    return JSONResponse.error(.badRequest, "a broker goes down or up", field: "state")
                }
            } catch {
                return JSONResponse.error(.internalServerError, "\(error)")
            }
            return JSONResponse.make(.ok, BrokerView(broker: id, state: state))
        }
        router.post("/topics/{topic}/partitions/{partition}/leader/{broker}") { _, context in
            guard let topic = context.parameters.get("topic"), self.topics.contains(topic) else {
                return JSONResponse.error(.notFound, "no such topic", field: "topic")
            }
            guard let partition = context.parameters.get("partition", as: Int32.self), (0..<self.partitions).contains(partition) else {
                return JSONResponse.error(.notFound, "no such partition: \(topic) has 0 to \(self.partitions - 1)", field: "partition")
            }
            guard let broker = context.parameters.get("broker", as: Int32.self), (1...self.cluster.brokerCount).contains(broker) else {
                return JSONResponse.error(.notFound, "no such broker: the brokers are 1 to \(self.cluster.brokerCount)", field: "broker")
            }
            do {
                try self.cluster.setLeader(of: topic, partition: partition, to: broker)
            } catch {
                return JSONResponse.error(.internalServerError, "\(error)")
            }
            return JSONResponse.make(.ok, LeaderView(topic: topic, partition: partition, leader: broker))
        }
        return router
    }

    struct BrokerView: Codable {
        let broker: Int32
        let state: String
    }

    struct LeaderView: Codable {
        let topic: String
        let partition: Int32
        let leader: Int32
    }

    /// POSTs a fault command to the running cluster and returns its answer; fails with its error message.
    static func send(_ path: String, varDirectory: String) async throws -> String {
        let file = Self.file(varDirectory: varDirectory)
        guard let url = try? String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) else {
            throw CommandFailure("no embedded cluster runs for \(varDirectory) (\(file) is missing): start it with `emporium cluster`")
        }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            var request = HTTPClientRequest(url: url + path)
            request.method = .POST
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = String(buffer: try await response.body.collect(upTo: 1 << 16))
            try await client.shutdown()
            guard response.status == .ok else { throw CommandFailure("the cluster refused: \(body)") }
            return body
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}
