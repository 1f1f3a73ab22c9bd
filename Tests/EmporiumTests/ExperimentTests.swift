import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct ExperimentTests {
    static let names = [
        "durability", "ordering", "load-balancing", "failover", "offsets", "replay", "fan-out", "producer-settings",
        "dead-letters", "broker-failover", "backpressure", "scale-limit", "exactly-once", "retention",
    ]

    /// `list` names each experiment once with its claim, and docs/experiments.md explains every one of them.
    @Test func theListNamesEveryExperimentAndTheDocsExplainEach() throws {
        let list = try run(Executables.url("emporium").path, ["experiment", "list"])
        #expect(list.status == 0)
        let lines = list.output.split(separator: "\n")
        #expect(lines.map { String($0.split(separator: " ").first ?? "") } == Self.names, "\(list.output)")
        #expect(lines.allSatisfy { $0.split(separator: " ").count > 6 }, "each experiment states its claim: \(list.output)")
        let docs = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/experiments.md"), encoding: .utf8)
        for name in Self.names { #expect(docs.contains("### \(name)"), "docs/experiments.md has no section for \(name)") }
    }

    @Test func anUnknownExperimentIsRefusedWithTheNamesToChooseFrom() throws {
        let result = try run(Executables.url("emporium").path, ["experiment", "run", "telepathy"])
        #expect(result.status == 64, "\(result.output)")
        #expect(result.output.contains("no experiment named telepathy") && result.output.contains("durability"), "\(result.output)")
    }

    /// Every experiment, one after another, on the tests' build: each narrates its steps, prints evidence, shows
    /// its claim, and stops everything it started. The verdicts are the experiments' own checks of what they
    /// measured (lag equal to what was written, per-member counts equal to the partitions' contents, the audit).
    @Test func everyExperimentShowsItsClaimAndLeavesNothingRunning() throws {
        let scope = try ScopedTemporaryDirectory()
        let result = try run(
            Executables.url("emporium").path, ["experiment", "run", "all", "--seed", "3", "--bin-dir", Executables.directory.path],
            environment: scope.environment, timeout: .seconds(1_200))
        print(result.output)
        #expect(result.status == 0, "\(result.output.suffix(4_000))")
        for name in Self.names {
            let section = result.output.components(separatedBy: "▸ \(name):").dropFirst().first ?? ""
            #expect(!section.isEmpty, "\(name) did not run")
            let verdict = section.components(separatedBy: "\n▸").first ?? ""
            #expect(verdict.contains("\n✔ shown: "), "\(name): \(verdict.suffix(1_500))")
            #expect(verdict.contains(" s  starting"), "\(name) narrates its steps")
        }
        #expect(!result.output.contains("✘"))
        #expect(result.output.contains("14 experiments: every claim shown"))
        // librdkafka's own lines (several while broker-failover's broker is down) come through swift-log, not
        // in librdkafka's `%4|<time>|<facility>|<client>|` format on stderr.
        let unformatted = result.output.split(separator: "\n").filter { $0.hasPrefix("%") }
        #expect(unformatted.isEmpty, "\(unformatted.prefix(5))")
        let left = try scope.processesLeft()
        #expect(left.isEmpty, "experiments left processes running: \(left)")
    }

    /// Interrupted midway (SIGTERM, as from a supervisor), an experiment stops the shop it started before it exits.
    @Test func anInterruptedExperimentStopsWhatItStarted() async throws {
        let scope = try ScopedTemporaryDirectory()
        let experiment = try ChildProcess(Executables.url("emporium"), ["experiment", "run", "durability", "--bin-dir", Executables.directory.path],
                                          log: scope.url.appendingPathComponent("experiment.log"), environment: ["TMPDIR": scope.url.path])
        try await waitUntil(.seconds(60), "the shop started and orders placed") { experiment.output.contains("placing 20 orders") }
        #expect(!(try scope.processesLeft()).isEmpty, "the experiment's shop runs")
        let status = experiment.stop(signal: SIGTERM, grace: .seconds(40))
        #expect(status == 128 + SIGTERM, "\(experiment.output.suffix(2_000))")
        #expect(experiment.output.contains("stopping 5 processes this command started") || experiment.output.contains("stopping 6 processes"),
                "\(experiment.output.suffix(2_000))")
        #expect(try scope.processesLeft().isEmpty, "an interrupted experiment left its shop running")
    }
}
