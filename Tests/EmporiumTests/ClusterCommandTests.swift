import Foundation
import Testing

@Suite struct ClusterCommandTests {
    @Test func theEmbeddedClusterPublishesItsBrokersAndEmporiumsTopicsAndStopsOnSigterm() async throws {
        let varDir = try temporaryDirectory("cluster")
        defer { try? FileManager.default.removeItem(at: varDir) }
        let cluster = try await startEmbeddedCluster(in: varDir, partitions: 4)
        defer { cluster.stop(signal: SIGKILL) }
        let bootstrapFile = varDir.appendingPathComponent("kafka/bootstrap")
        let servers = try String(contentsOf: bootstrapFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(servers.split(separator: ",").count == 3)

        let listing = try run("/usr/bin/kcat", ["-b", servers, "-L", "-m", "10"])
        #expect(listing.status == 0)
        #expect(listing.output.contains("3 brokers"))
        for topic in ["orders", "payments", "inventory", "notifications"] {
            #expect(listing.output.contains("topic \"\(topic)\" with 4 partitions"))
            #expect(listing.output.contains("topic \"\(topic).dlq\" with 4 partitions"))
        }

        #expect(cluster.stop(signal: SIGTERM) == 0)
        #expect(!FileManager.default.fileExists(atPath: bootstrapFile.path), "the bootstrap file outlived the cluster")
    }

    @Test func aReplicationFactorAboveTheBrokerCountIsRejected() throws {
        let result = try run(Executables.url("emporium").path, ["cluster", "--brokers", "1", "--replication-factor", "3"])
        #expect(result.status != 0)
        #expect(result.output.contains("--replication-factor must be between 1 and --brokers"))
    }

    /// `emporium cluster broker N down|up` and `emporium cluster leader` reach the running cluster: a partition
    /// moved to broker 2 takes nothing while broker 2 is down, and takes it again once it is back.
    @Test func faultCommandsTakeABrokerDownAndBringItBack() async throws {
        let varDir = try temporaryDirectory("cluster-faults")
        defer { try? FileManager.default.removeItem(at: varDir) }
        let cluster = try await startEmbeddedCluster(in: varDir, partitions: 2)
        defer { cluster.stop(signal: SIGKILL) }
        let bootstrapFile = varDir.appendingPathComponent("kafka/bootstrap")
        let servers = try String(contentsOf: bootstrapFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        func emporium(_ arguments: [String]) throws -> (status: Int32, output: String) {
            try run(Executables.url("emporium").path, ["cluster"] + arguments + ["--var-dir", varDir.path], timeout: .seconds(30))
        }
        func produce(_ text: String) throws -> (status: Int32, output: String) {
            let file = varDir.appendingPathComponent("message.txt")
            try (text + "\n").write(to: file, atomically: true, encoding: .utf8)
            return try run("/usr/bin/kcat", ["-P", "-b", servers, "-t", "orders", "-p", "0", "-X", "message.timeout.ms=3000", "-l", file.path],
                           timeout: .seconds(30))
        }

        let moved = try emporium(["leader", "orders", "0", "2"])
        #expect(moved.status == 0 && moved.output.contains("\"leader\":2"), "\(moved.output)")
        let down = try emporium(["broker", "2", "down"])
        #expect(down.status == 0 && down.output.contains("\"state\":\"down\""), "\(down.output)")
        let refused = try produce("while broker 2 is down")
        #expect(refused.status != 0 || refused.output.contains("failed"), "a partition led by a broker that is down took a message: \(refused.output)")

        let up = try emporium(["broker", "2", "up"])
        #expect(up.status == 0 && up.output.contains("\"state\":\"up\""), "\(up.output)")
        let accepted = try produce("after broker 2 is back")
        #expect(accepted.status == 0, "\(accepted.output)")
        let read = try run("/usr/bin/kcat", ["-C", "-b", servers, "-t", "orders", "-p", "0", "-o", "beginning", "-e", "-q"], timeout: .seconds(30))
        #expect(read.output.contains("after broker 2 is back"))

        let unknown = try emporium(["broker", "9", "down"])
        #expect(unknown.status != 0 && unknown.output.contains("no such broker"), "\(unknown.output)")
        #expect(cluster.stop(signal: SIGTERM) == 0)
        #expect(!FileManager.default.fileExists(atPath: varDir.appendingPathComponent("kafka/control").path))
    }
}
