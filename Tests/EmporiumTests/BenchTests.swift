import Foundation
import Testing

@Suite(.serialized) struct BenchTests {
    /// `emporium bench shop` on the tests' build, small: each phase's figures are there and add up, the audit
    /// it runs is clean, and it leaves nothing running.
    @Test func benchShopMeasuresEachPhaseAndStopsWhatItStarted() throws {
        let scope = try ScopedTemporaryDirectory()
        let result = try run(
            Executables.url("emporium").path,
            ["bench", "shop", "--orders", "120", "--concurrency", "8", "--rates", "30", "--seed", "5", "--json",
             "--bin-dir", Executables.directory.path],
            environment: scope.environment, timeout: .seconds(400))
        #expect(result.status == 0, "\(result.output.suffix(3_000))")
        let report = json(result.output.split(separator: "\n").last.map(String.init) ?? "")
        let phases = report["phases"] as? [[String: Any]] ?? []
        #expect(phases.map { $0["phase"] as? String ?? "" } == ["closed loop, 8 clients", "open loop, 30 orders/s"], "\(report)")
        for phase in phases {
            #expect(phase["placed"] as? Int == 120 && phase["pending"] as? Int == 0 && phase["failedRequests"] as? Int == 0, "\(phase)")
            #expect((phase["confirmed"] as? Int ?? 0) + (phase["cancelled"] as? Int ?? 0) == 120, "\(phase)")
            #expect((phase["ordersPerSecond"] as? Double ?? 0) > 0)
            let latency = phase["latencyMilliseconds"] as? [String: Double] ?? [:]
            let ordered = ["p50", "p95", "p99", "max"].compactMap { latency[$0] }
            #expect(ordered.count == 4 && ordered == ordered.sorted() && ordered[0] > 0, "\(latency)")
            let cpu = phase["cpuMillisecondsPerOrder"] as? [String: Double] ?? [:]
            #expect(Set(cpu.keys) == ["cluster", "order-service", "payment-service", "inventory-service", "notification-service"])
            #expect(cpu.values.allSatisfy { $0 > 0 }, "every process spends CPU on an order: \(cpu)")
            let total = phase["cpuMillisecondsPerOrderTotal"] as? Double ?? -1
            #expect(abs(total - cpu.values.reduce(0, +)) < 1e-6)
            #expect((phase["generatorCpuMillisecondsPerOrder"] as? Double ?? 0) > 0)
        }
        let memory = report["peakMemoryMB"] as? [String: Double] ?? [:]
        #expect(memory.count == 5 && memory.values.allSatisfy { $0 > 1 }, "\(memory)")
        #expect(report["auditClean"] as? Bool == true)
        let left = try scope.processesLeft()
        #expect(left.isEmpty, "bench shop left processes running: \(left)")
    }

    /// `emporium bench shop --baseline-bin-dir`, the tests' build against itself, one pair: each build's run is
    /// there with its figures, each figure lists the runs' values in the order they ran, and its ratio is the
    /// medians'. Asking for pairs without a baseline is refused, saying what is missing.
    @Test func benchShopComparesTwoBuildsRunAlternately() throws {
        let scope = try ScopedTemporaryDirectory()
        let refused = try run(
            Executables.url("emporium").path, ["bench", "shop", "--pairs", "2"], environment: scope.environment, timeout: .seconds(60))
        #expect(refused.status != 0 && refused.output.contains("--baseline-bin-dir"), "\(refused.output.suffix(1_000))")

        let result = try run(
            Executables.url("emporium").path,
            ["bench", "shop", "--orders", "120", "--concurrency", "8", "--rates", "", "--seed", "9", "--json", "--pairs", "1",
             "--baseline-bin-dir", Executables.directory.path, "--bin-dir", Executables.directory.path],
            environment: scope.environment, timeout: .seconds(400))
        #expect(result.status == 0, "\(result.output.suffix(3_000))")
        let report = json(result.output.split(separator: "\n").last.map(String.init) ?? "")
        var rates: [String: Double] = [:]
        for build in ["baseline", "candidate"] {
            let runs = (report[build] as? [String: Any])?["runs"] as? [[String: Any]] ?? []
            #expect(runs.count == 1, "\(build): \(report)")
            let phases = runs.first?["phases"] as? [[String: Any]] ?? []
            #expect(phases.map { $0["phase"] as? String } == ["closed loop, 8 clients"] && phases.first?["placed"] as? Int == 120, "\(phases)")
            rates[build] = phases.first?["ordersPerSecond"] as? Double
        }
        let phases = report["phases"] as? [[String: Any]] ?? []
        let figures = phases.first?["figures"] as? [[String: Any]] ?? []
        let throughput = figures.first { $0["figure"] as? String == "orders/s to terminal" } ?? [:]
        #expect(throughput["baseline"] as? [Double] == [rates["baseline"] ?? -1], "\(throughput)")
        #expect(throughput["candidate"] as? [Double] == [rates["candidate"] ?? -1], "\(throughput)")
        for figure in figures + (report["peakMemoryMB"] as? [[String: Any]] ?? []) {
            let baseline = figure["baselineMedian"] as? Double ?? 0, candidate = figure["candidateMedian"] as? Double ?? 0
            #expect(baseline > 0 && candidate > 0, "\(figure)")
            #expect(abs((figure["ratio"] as? Double ?? 0) - candidate / baseline) < 1e-9, "\(figure)")
        }
        #expect(figures.count == 9, "\(figures.map { $0["figure"] ?? "" })")
        #expect(report["auditsClean"] as? Bool == true)
        let left = try scope.processesLeft()
        #expect(left.isEmpty, "bench shop left processes running: \(left)")
    }

    /// A run larger than the embedded cluster keeps (5 MB per partition) would leave both consumers waiting for
    /// messages the log already dropped: it fails at once, saying why, and stops its cluster.
    @Test func benchKafkaRefusesARunTheClusterCannotHold() throws {
        let scope = try ScopedTemporaryDirectory()
        let result = try run(
            Executables.url("emporium").path, ["bench", "kafka", "--messages", "100000", "--partitions", "1", "--rounds", "1"],
            environment: scope.environment, timeout: .seconds(180))
        #expect(result.status != 0)
        #expect(result.output.contains("100000 events do not fit"), "\(result.output.suffix(3_000))")
        let left = try scope.processesLeft()
        #expect(left.isEmpty, "bench kafka left processes running: \(left)")
    }

    /// `emporium bench kafka`, small: both clients' rates in steady state and over the whole run, and the ratio
    /// each row prints is ours over kcat's.
    @Test func benchKafkaComparesBothClientsInSteadyStateAndOverWholeRuns() throws {
        let scope = try ScopedTemporaryDirectory()
        let result = try run(
            Executables.url("emporium").path, ["bench", "kafka", "--messages", "20000", "--rounds", "1", "--json"],
            environment: scope.environment, timeout: .seconds(180))
        #expect(result.status == 0, "\(result.output.suffix(3_000))")
        // The cluster it started may log its stop after the figures.
        let report = json(result.output.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init) ?? "")
        #expect(report["messages"] as? Int == 20_000, "\(result.output.suffix(3_000))")
        for figure in ["produce", "consume", "produceWhole", "consumeWhole"] {
            let comparison = report[figure] as? [String: Double] ?? [:]
            let ours = comparison["emporium"] ?? 0, kcat = comparison["kcat"] ?? 0
            #expect(ours > 0 && kcat > 0, "\(figure): \(comparison)")
            #expect(abs((comparison["ratio"] ?? 0) - ours / kcat) < 0.01, "\(figure): \(comparison)")
        }
        // The join is in the whole run and not in steady state.
        let consume = report["consume"] as? [String: Double] ?? [:], whole = report["consumeWhole"] as? [String: Double] ?? [:]
        #expect((consume["emporium"] ?? 0) > (whole["emporium"] ?? 0) && (consume["kcat"] ?? 0) > (whole["kcat"] ?? 0), "\(report)")
        let left = try scope.processesLeft()
        #expect(left.isEmpty, "bench kafka left processes running: \(left)")
    }
}
