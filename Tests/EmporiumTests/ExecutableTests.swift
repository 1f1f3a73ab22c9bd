import Foundation
import Testing

@Suite struct ExecutableTests {
    /// Every flag the README lists for an executable (or a CLI command) appears in its `--help`.
    static let readmeFlags: [(command: [String], flags: [String])] = [
        (["order-service"], ["--bootstrap-servers", "--kafka-property", "--var-dir", "--database", "--group-id", "--instance-id", "--port", "--log-level"]),
        (["payment-service"], ["--bootstrap-servers", "--kafka-property", "--var-dir", "--database", "--group-id", "--instance-id", "--port", "--log-level"]),
        (["inventory-service"], ["--bootstrap-servers", "--kafka-property", "--var-dir", "--database", "--group-id", "--instance-id", "--port", "--log-level"]),
        (["notification-service"], ["--bootstrap-servers", "--var-dir", "--database", "--port", "--mail-dir", "--smtp-url"]),
        // `emporium cluster` runs its default subcommand, `serve`, whose help lists these.
        (["emporium", "cluster", "serve"], ["--brokers", "--partitions", "--replication-factor", "--topics"]),
        (["emporium", "generate"], ["--orders", "--rate", "--concurrency", "--customers", "--products", "--skew", "--seed", "--url", "--timeout", "--retries", "--json", "--record"]),
        (["emporium", "audit"], ["--databases", "--mail", "--settle"]),
        (["emporium", "status"], ["--watch", "--json", "--service"]),
        (["emporium", "console"], ["--port", "--service"]),
        (["emporium", "dlq", "list"], ["--json", "--bootstrap-servers", "--kafka-property", "--var-dir"]),
        (["emporium", "dlq", "parked"], ["--databases", "--var-dir"]),
        (["emporium", "cluster", "broker"], ["--var-dir"]),
        (["emporium", "cluster", "leader"], ["--var-dir"]),
        (["emporium", "bench", "shop"], ["--orders", "--concurrency", "--rates", "--customers", "--products", "--seed", "--bin-dir", "--baseline-bin-dir", "--pairs", "--json"]),
        (["emporium", "bench", "kafka"], ["--messages", "--rounds", "--keys", "--partitions", "--brokers", "--seed", "--json"]),
        (["emporium", "bench", "runtime"], ["--events", "--seed", "--json"]),
        (["emporium", "experiment", "run"], ["--seed", "--bin-dir", "--keep"]),
    ]

    @Test(arguments: 0..<readmeFlags.count)
    func everyExecutableExplainsItselfWithHelpAndTheFlagsTheREADMEListsAppear(index: Int) throws {
        let (command, flags) = Self.readmeFlags[index]
        let help = try run(Executables.url(command[0]).path, Array(command.dropFirst()) + ["--help"])
        #expect(help.status == 0)
        #expect(help.output.contains("USAGE"))
        for flag in flags { #expect(help.output.contains(flag), "\(command.joined(separator: " ")) --help lacks \(flag)") }
    }

    /// The README lists the flags in its CLI block and services section; the table above must keep up with it.
    @Test func theTableAboveCoversEveryFlagTheREADMEShowsForTheCLI() throws {
        let readme = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md"), encoding: .utf8)
        let block = try #require(readme.range(of: "```text\nemporium cluster").map { readme[$0.lowerBound...] }?.split(separator: "```").first)
        let listed = Set(Self.readmeFlags.flatMap(\.flags))
        let shown = block.split(whereSeparator: { !($0.isLetter || $0 == "-") }).filter { $0.hasPrefix("--") }.map(String.init)
        for flag in shown { #expect(listed.contains(flag), "README shows \(flag), which no --help test checks") }
    }

    @Test func aServiceWithAWrongSettingStopsNamingIt() throws {
        let result = try run(Executables.url("payment-service").path, [],
                             environment: childEnvironment(["PORT": "http", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"]))
        #expect(result.status != 0)
        #expect(result.output.contains("invalid setting PORT='http': expected a port number"))
    }

    @Test func aServiceWithNoKafkaToFindSaysWhereToSetIt() throws {
        let varDir = try temporaryDirectory("no-kafka")
        defer { try? FileManager.default.removeItem(at: varDir) }
        let result = try run(Executables.url("order-service").path, ["--var-dir", varDir.path], environment: childEnvironment([:]))
        #expect(result.status != 0)
        #expect(result.output.contains("KAFKA_BOOTSTRAP_SERVERS") && result.output.contains("emporium cluster"))
    }
}
