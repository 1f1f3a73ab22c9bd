import Foundation
import Testing

@Suite(.serialized) struct DeployTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The README's `deploy/run.sh --instances`, for every service at once, against the tests' build: the run
    /// ends with a clean audit, both instances of each service took partitions, each order was mailed once, and
    /// the script stopped every process it started.
    @Test func runShWithTwoInstancesOfEveryServiceEndsCleanAndMailsEachOrderOnce() throws {
        let varDir = try temporaryDirectory("run-sh")
        defer { try? FileManager.default.removeItem(at: varDir) }
        let services = ["order-service", "payment-service", "inventory-service", "notification-service"]
        let firstPort = try freePortBlock()
        let result = try run(
            "/bin/bash",
            [Self.repository.appendingPathComponent("deploy/run.sh").path, "--orders", "300", "--first-port", String(firstPort)]
                + services.flatMap { ["--instances", "\($0)=2"] },
            environment: childEnvironment(["EMPORIUM_VAR": varDir.path, "EMPORIUM_BIN_DIR": Executables.directory.path]),
            timeout: .seconds(300))
        #expect(result.status == 0, "run.sh failed:\n\(result.output)")
        #expect(result.output.contains("✔ every placed order has exactly one terminal event: 300 orders"), "\(result.output)")
        #expect(!result.output.contains("✘"))

        let logs = varDir.appendingPathComponent("logs")
        for service in services {
            for instance in 1...2 {
                let log = (try? String(contentsOf: logs.appendingPathComponent("\(service)-\(instance).log"), encoding: .utf8)) ?? ""
                #expect(log.contains(/assigned [1-9][0-9]* partitions/), "\(service)-\(instance) never owned a partition:\n\(log.suffix(2_000))")
            }
        }
        let mail = ((try? FileManager.default.contentsOfDirectory(atPath: varDir.appendingPathComponent("mail").path)) ?? []).filter { $0.hasSuffix(".eml") }
        #expect(mail.count == 300, "\(mail.count) emails for 300 orders")

        let pidFiles = (try? FileManager.default.contentsOfDirectory(atPath: varDir.appendingPathComponent("pids").path)) ?? []
        #expect(pidFiles.isEmpty, "run.sh left \(pidFiles) behind")
        for line in result.output.split(separator: "\n") where line.contains("stopped ") {
            if let pid = line.split(separator: "(").last.flatMap({ Int32($0.dropLast()) }) {
                #expect(kill(pid, 0) != 0, "\(line) is still running")
            }
        }
    }
}
