import Foundation
import Testing

@Suite struct ClusterCommandTests {
    @Test func theEmbeddedClusterPublishesItsBrokersAndEmporiumsTopicsAndStopsOnSigterm() async throws {
        let varDir = try temporaryDirectory("cluster")
        defer { try? FileManager.default.removeItem(at: varDir) }
        let cluster = try ChildProcess(
            Executables.url("emporium"), ["cluster", "--var-dir", varDir.path, "--partitions", "4"],
            log: varDir.appendingPathComponent("cluster.log"))
        defer { cluster.stop(signal: SIGKILL) }
        let bootstrapFile = varDir.appendingPathComponent("kafka/bootstrap")
        try await waitUntil(.seconds(20), "the bootstrap file") { FileManager.default.fileExists(atPath: bootstrapFile.path) }
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
}
