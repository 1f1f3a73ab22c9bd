import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import ServiceRuntime

/// The whole shop measured from outside: an embedded cluster and the four services started from the same
/// build, the generator run closed loop and then open loop at fixed rates, and per phase the orders/s, the
/// placed-to-terminal latency and the CPU each process spent per order (from `/proc/<pid>/stat`).
struct ShopBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shop",
        abstract: "Run the whole shop on a fresh embedded cluster and measure orders/s, latency, CPU per order and memory.",
        discussion: """
        Starts `emporium cluster` and the four services from the directory this emporium lives in (--bin-dir to
        choose another build) under a temporary runtime directory, then runs `emporium generate` once closed loop
        (--concurrency clients) and once open loop per --rates, --orders orders each. Between phases it waits until
        every outbox is empty and no group lags, so each phase's CPU includes the capture and the email its orders
        cause. Ends with `emporium audit`, and stops everything it started.

        With --baseline-bin-dir it compares two builds: it runs the baseline's shop and this one's (--bin-dir) in
        turn, --pairs times each, alternating which build runs first in each pair (on a shared machine the first
        run of a pair can differ from the second by more than a change does), and prints every run's figures,
        each build's median and the ratio between the medians.
        """)

    @Option(help: "Orders per phase.")
    var orders: Int = 5_000

    @Option(help: "Clients of the closed-loop phase.")
    var concurrency: Int = 64

    @Option(help: "Open-loop rates in orders/s, comma-separated; an empty value skips open loop.")
    var rates: String = "200,1000"

    @Option(help: "Distinct customers.")
    var customers: Int = 100

    @Option(help: "Distinct products.")
    var products: Int = 200

    @Option(help: "Seed of the first phase's orders (each later phase adds one).")
    var seed: UInt64 = 1

    @Option(help: "Directory of the emporium and service executables (default: this emporium's own).")
    var binDir: String?

    @Option(help: "Directory of another build to measure this one against, in alternating runs.")
    var baselineBinDir: String?

    @Option(help: "Runs of each build with --baseline-bin-dir (default: 3).")
    var pairs: Int?

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func validate() throws {
        guard orders > 0 else { throw ValidationError("--orders must be at least 1") }
        guard concurrency > 0 else { throw ValidationError("--concurrency must be at least 1") }
        _ = try openLoopRates()
        if let pairs {
            guard baselineBinDir != nil else { throw ValidationError("--pairs compares builds: give the other one with --baseline-bin-dir") }
            guard pairs > 0 else { throw ValidationError("--pairs must be at least 1") }
        }
    }

    private func openLoopRates() throws -> [Int] {
        try rates.split(separator: ",").map { text in
            guard let rate = Int(text.trimmingCharacters(in: .whitespaces)), rate > 0 else {
                throw ValidationError("--rates takes positive orders/s separated by commas, like 200,1000")
            }
            return rate
        }
    }

    func run() async throws {
        guard let baselineBinDir else {
            let report = try await measureShop(binDirectory: binDir)
            print(json ? report.jsonLine : report.table)
            return
        }
        let pairs = self.pairs ?? 3
        let builds = [(name: "baseline", directory: baselineBinDir), (name: "candidate", directory: binDir ?? LocalShop.ownBinDirectory)]
        var runs: [[ShopBenchReport]] = [[], []]
        for pair in 1...pairs {
            for index in pair % 2 == 1 ? [0, 1] : [1, 0] {
                progress("pair \(pair) of \(pairs): the \(builds[index].name) build (\(builds[index].directory))")
                runs[index].append(try await measureShop(binDirectory: builds[index].directory))
            }
        }
        let comparison = ShopComparison(
            baseline: .init(binDirectory: builds[0].directory, runs: runs[0]),
            candidate: .init(binDirectory: builds[1].directory, runs: runs[1]))
        print(json ? comparison.jsonLine : comparison.table)
    }

    /// One run of one build's shop: started fresh, every phase measured, audited, stopped. A run whose audit
    /// is not clean fails, keeping its directory for a look.
    private func measureShop(binDirectory: String?) async throws -> ShopBenchReport {
        let shop = try BenchShop(binDirectory: binDirectory)
        let report: ShopBenchReport
        do {
            try await shop.start()
            var phases: [PhaseResult] = []
            let plan = [Phase.closed(concurrency: concurrency)] + (try openLoopRates()).map(Phase.open)
            for (index, phase) in plan.enumerated() {
                progress("phase \(phase.name): \(orders) orders")
                phases.append(try await shop.measure(phase, orders: orders, customers: customers, products: products, seed: seed + UInt64(index)))
            }
            report = ShopBenchReport(phases: phases, peakMemoryMB: shop.peakMemory(), auditClean: try await shop.audit())
        } catch {
            await shop.stop()
            throw error
        }
        await shop.stop()
        guard report.auditClean else {
            print(json ? report.jsonLine : report.table)
            throw CommandFailure("the audit found violations; its output and every process's log are in \(shop.varDirectory.path)")
        }
        shop.shop.removeDirectory()
        return report
    }

    private func progress(_ line: String) {
        if !json { FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }
}

enum Phase {
    case closed(concurrency: Int)
    case open(Int)

    var name: String {
        switch self {
        case .closed(let clients): "closed loop, \(clients) clients"
        case .open(let rate): "open loop, \(rate) orders/s"
        }
    }

    var generatorArguments: [String] {
        switch self {
        case .closed(let clients): ["--concurrency", String(clients)]
        case .open(let rate): ["--rate", String(rate)]
        }
    }
}

struct PhaseResult: Encodable {
    let phase: String
    let placed: Int
    let confirmed: Int
    let cancelled: Int
    let pending: Int
    let failedRequests: Int
    let ordersPerSecond: Double
    let latencyMilliseconds: [String: Double]
    /// CPU milliseconds per order, per process of the shop (cluster and services).
    let cpuMillisecondsPerOrder: [String: Double]
    /// The sum over the shop's processes; the generator is listed apart.
    let cpuMillisecondsPerOrderTotal: Double
    let generatorCpuMillisecondsPerOrder: Double
}

struct ShopBenchReport: Encodable {
    let phases: [PhaseResult]
    let peakMemoryMB: [String: Double]
    let auditClean: Bool

    var table: String {
        var lines: [String] = []
        for phase in phases {
            let latency = ["p50", "p95", "p99", "max"].map { "\($0) \(String(format: "%.0f", phase.latencyMilliseconds[$0] ?? 0))" }.joined(separator: "  ")
            lines.append(phase.phase)
            lines.append("  orders/s to terminal   \(String(format: "%.0f", phase.ordersPerSecond))   (\(phase.placed) placed: \(phase.confirmed) confirmed, \(phase.cancelled) cancelled, \(phase.pending) pending, \(phase.failedRequests) failed requests)")
            lines.append("  placed → terminal ms   \(latency)")
            let perProcess = BenchShop.processNames.map { "\($0) \(String(format: "%.2f", phase.cpuMillisecondsPerOrder[$0] ?? 0))" }.joined(separator: "  ")
            lines.append("  CPU ms per order       total \(String(format: "%.2f", phase.cpuMillisecondsPerOrderTotal))  =  \(perProcess)")
            lines.append("                         generator \(String(format: "%.2f", phase.generatorCpuMillisecondsPerOrder)) (apart)")
        }
        lines.append("peak RSS MB              " + BenchShop.processNames.map { "\($0) \(String(format: "%.1f", peakMemoryMB[$0] ?? 0))" }.joined(separator: "  "))
        lines.append("audit                    \(auditClean ? "clean" : "VIOLATIONS (see emporium audit)")")
        return lines.joined(separator: "\n")
    }
}

/// The shop of one benchmark run, with the CPU and memory each of its processes used.
final class BenchShop: @unchecked Sendable {
    // @unchecked: used by the one command that owns it, from one task at a time.
    static let processNames = ["cluster"] + ShopLayout.services

    let shop: LocalShop
    var varDirectory: URL { shop.varDirectory }

    init(binDirectory: String?) throws {
        shop = try LocalShop(binDirectory: binDirectory, label: "bench-shop")
    }

    func start() async throws { try await shop.start() }

    func stop() async { await shop.stopAll() }

    func audit() async throws -> Bool { try await shop.audit().clean }

    /// Each process of the shop by the name the report gives it.
    private var processes: [String: Process] {
        var processes = Dictionary(shop.instances.map { ($0.service, $0.process) }) { first, _ in first }
        processes["cluster"] = shop.cluster
        return processes
    }

    func measure(_ phase: Phase, orders: Int, customers: Int, products: Int, seed: UInt64) async throws -> PhaseResult {
        let before = cpuTicks()
        let summary: Summary
        switch phase {
        case .closed(let clients):
            summary = try await shop.generate(orders: orders, seed: seed, concurrency: clients, customers: customers, products: products)
        case .open(let rate):
            summary = try await shop.generate(orders: orders, seed: seed, rate: Double(rate), customers: customers, products: products)
        }
        try await shop.waitUntilAtRest()
        let after = cpuTicks()
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        let perOrder = Dictionary(uniqueKeysWithValues: Self.processNames.map { name in
            (name, Double(after[name, default: 0] - before[name, default: 0]) / ticksPerSecond * 1000 / Double(orders))
        })
        return PhaseResult(
            phase: phase.name,
            placed: summary.placed,
            confirmed: summary.confirmed,
            cancelled: summary.cancelledPaymentDeclined + summary.cancelledOutOfStock,
            pending: summary.pending,
            failedRequests: summary.httpErrors,
            ordersPerSecond: summary.ordersPerSecond,
            latencyMilliseconds: summary.latencyMilliseconds,
            cpuMillisecondsPerOrder: perOrder,
            cpuMillisecondsPerOrderTotal: perOrder.values.reduce(0, +),
            generatorCpuMillisecondsPerOrder: summary.cpuSeconds * 1000 / Double(orders))
    }

    /// Peak resident memory (VmHWM) of each process, in MB.
    func peakMemory() -> [String: Double] {
        processes.compactMapValues { process in
            guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
                  let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
            return kilobytes / 1024
        }
    }

    /// User plus system clock ticks each process has used so far (fields 14 and 15 of /proc/<pid>/stat).
    private func cpuTicks() -> [String: Int] {
        processes.compactMapValues { process in
            guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // After the command name in parentheses: state is field 3, utime 14, stime 15.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
            return user + system
        }
    }
}
