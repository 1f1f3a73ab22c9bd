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

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func validate() throws {
        guard orders > 0 else { throw ValidationError("--orders must be at least 1") }
        guard concurrency > 0 else { throw ValidationError("--concurrency must be at least 1") }
        _ = try openLoopRates()
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
        let directory = binDir ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        let shop = try BenchShop(binDirectory: directory)
        let report: ShopBenchReport
        do {
            try await shop.start()
            var phases: [PhaseResult] = []
            let plan = [Phase.closed(concurrency: concurrency)] + (try openLoopRates()).map(Phase.open)
            for (index, phase) in plan.enumerated() {
                if !json { FileHandle.standardError.write(Data("phase \(phase.name): \(orders) orders\n".utf8)) }
                phases.append(try await shop.measure(phase, orders: orders, customers: customers, products: products, seed: seed + UInt64(index)))
            }
            report = ShopBenchReport(phases: phases, peakMemoryMB: shop.peakMemory(), auditClean: try shop.audit())
        } catch {
            shop.stop()
            throw error
        }
        shop.stop()
        print(json ? report.jsonLine : report.table)
        guard report.auditClean else {
            throw CommandFailure("the audit found violations; its output and every process's log are in \(shop.varDirectory.path)")
        }
        try? FileManager.default.removeItem(at: shop.varDirectory)
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

/// The processes of one benchmark run, each started by this command and stopped by PID.
final class BenchShop: @unchecked Sendable {
    // @unchecked: used by the one command that owns it, from one task at a time.
    static let services = ["order-service", "payment-service", "inventory-service", "notification-service"]
    static let processNames = ["cluster"] + services

    let binDirectory: String
    let varDirectory: URL
    private var processes: [String: Process] = [:]
    private var ports: [String: Int] = [:]
    private let http = HTTPClient(eventLoopGroupProvider: .singleton)

    init(binDirectory: String) throws {
        self.binDirectory = binDirectory
        varDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-bench-shop-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: varDirectory, withIntermediateDirectories: true)
    }

    func start() async throws {
        processes["cluster"] = try launch("emporium", ["cluster", "--var-dir", varDirectory.path], log: "cluster")
        let bootstrap = varDirectory.appendingPathComponent("kafka/bootstrap").path
        try await waitFor("the embedded cluster", seconds: 30) { FileManager.default.fileExists(atPath: bootstrap) }
        for service in Self.services {
            let port = try freePort()
            ports[service] = port
            processes[service] = try launch(service, ["--var-dir", varDirectory.path, "--port", String(port)], log: service)
        }
        for service in Self.services {
            try await waitFor("\(service) healthy", seconds: 60) { [self] in
                (try? await http.execute(HTTPClientRequest(url: url(of: service) + "/health"), timeout: .seconds(2)).status.code) == 200
            }
        }
    }

    func url(of service: String) -> String { "http://127.0.0.1:\(ports[service] ?? 0)" }

    func measure(_ phase: Phase, orders: Int, customers: Int, products: Int, seed: UInt64) async throws -> PhaseResult {
        let before = cpuTicks()
        let generator = try launch(
            "emporium",
            ["generate", "--url", url(of: "order-service"), "--orders", String(orders), "--customers", String(customers),
             "--products", String(products), "--seed", String(seed), "--json", "--var-dir", varDirectory.path] + phase.generatorArguments,
            log: "generate-\(seed)")
        try await waitFor("the generator", seconds: 3_600) { !generator.isRunning }
        let log = (try? String(contentsOf: varDirectory.appendingPathComponent("generate-\(seed).log"), encoding: .utf8)) ?? ""
        guard let line = log.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let summary = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw CommandFailure("the generator printed no summary:\n\(log.suffix(2_000))")
        }
        try await waitUntilAtRest()
        let after = cpuTicks()
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        let perOrder = Dictionary(uniqueKeysWithValues: Self.processNames.map { name in
            (name, Double(after[name, default: 0] - before[name, default: 0]) / ticksPerSecond * 1000 / Double(orders))
        })
        return PhaseResult(
            phase: phase.name,
            placed: summary["placed"] as? Int ?? 0,
            confirmed: summary["confirmed"] as? Int ?? 0,
            cancelled: (summary["cancelledPaymentDeclined"] as? Int ?? 0) + (summary["cancelledOutOfStock"] as? Int ?? 0),
            pending: summary["pending"] as? Int ?? 0,
            failedRequests: summary["httpErrors"] as? Int ?? 0,
            ordersPerSecond: summary["ordersPerSecond"] as? Double ?? 0,
            latencyMilliseconds: summary["latencyMilliseconds"] as? [String: Double] ?? [:],
            cpuMillisecondsPerOrder: perOrder,
            cpuMillisecondsPerOrderTotal: perOrder.values.reduce(0, +),
            generatorCpuMillisecondsPerOrder: (summary["cpuSeconds"] as? Double ?? 0) * 1000 / Double(orders))
    }

    /// Every outbox empty and no owned partition behind, twice in a row: the phase's orders have had all their
    /// effects (captures, emails) and the CPU they cost is counted.
    private func waitUntilAtRest() async throws {
        var quiet = 0
        try await waitFor("the shop at rest", seconds: 120) { [self] in
            var atRest = true
            for service in Self.services {
                guard let response = try? await http.execute(HTTPClientRequest(url: url(of: service) + "/status"), timeout: .seconds(2)),
                      let body = try? await response.body.collect(upTo: 1 << 20),
                      let status = try? JSONDecoder().decode(ServiceStatus.self, from: Data(body.readableBytesView)) else { return false }
                atRest = atRest && status.outboxDepth == 0 && status.partitions.allSatisfy { ($0.lag ?? 0) == 0 }
            }
            quiet = atRest ? quiet + 1 : 0
            return quiet >= 2
        }
    }

    func audit() throws -> Bool {
        let audit = try launch("emporium", ["audit", "--var-dir", varDirectory.path], log: "audit")
        audit.waitUntilExit()
        return audit.terminationStatus == 0
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

    private func launch(_ executable: String, _ arguments: [String], log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binDirectory).appendingPathComponent(executable)
        process.arguments = arguments
        let path = varDirectory.appendingPathComponent("\(log).log").path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    private func waitFor(_ what: String, seconds: Double, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while !(try await condition()) {
            guard ContinuousClock.now < deadline else { throw CommandFailure("timed out after \(Int(seconds)) s waiting for \(what); logs in \(varDirectory.path)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Services first, so that they flush to a live cluster; each gets 15 s to stop on SIGTERM, then SIGKILL.
    func stop() {
        for name in Self.services + ["cluster"] {
            guard let process = processes[name], process.isRunning else { continue }
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(15)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        try? http.syncShutdown()
    }
}

/// A port the kernel says is free on 127.0.0.1 right now.
private func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw CommandFailure("cannot open a socket") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw CommandFailure("no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
