import Foundation
import GRDB
import Kafka
import Testing

/// A whole shop for one test: its own embedded cluster and the four services, on their own ports and under
/// their own runtime directory. Everything it starts it stops by PID.
final class Shop: @unchecked Sendable {
    // @unchecked: the process list is only touched by the one test that owns the shop, never concurrently.
    static let services = ["order-service", "payment-service", "inventory-service", "notification-service"]

    let varDir: URL
    let cluster: ChildProcess
    let bootstrap: String
    private(set) var processes: [String: [ChildProcess]] = [:]
    private let environment: [String: [String: String]]
    /// Each instance's port, chosen by the kernel: "<service>-<instance>" → port.
    private var ports: [String: Int] = [:]

    /// Starts the cluster and every service (`instances` of each, default one) and waits until each answers
    /// `/health` as the very process this shop started.
    init(instances: [String: Int] = [:], partitions: Int = 12, environment: [String: [String: String]] = [:]) async throws {
        self.environment = environment
        varDir = try temporaryDirectory("shop")
        cluster = try ChildProcess(
            Executables.url("emporium"), ["cluster", "--var-dir", varDir.path, "--partitions", String(partitions)],
            log: varDir.appendingPathComponent("cluster.log"))
        let bootstrapFile = varDir.appendingPathComponent("kafka/bootstrap")
        try await waitUntil(.seconds(20), "the cluster") { FileManager.default.fileExists(atPath: bootstrapFile.path) }
        bootstrap = try String(contentsOf: bootstrapFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        for service in Self.services {
            for instance in 1...(instances[service] ?? 1) { try start(service, instance: instance) }
        }
        for service in Self.services {
            for instance in 1...(instances[service] ?? 1) { try await waitUntilHealthy(service, instance: instance) }
        }
    }

    /// Waits until the instance's `/health` names the PID this shop started it with, not some stale process.
    func waitUntilHealthy(_ service: String, instance: Int) async throws {
        let process = processes[service]![instance - 1]
        try await waitUntil(.seconds(60), "\(service)-\(instance) healthy") {
            guard process.isRunning else { throw ChildExited(name: "\(service)-\(instance)", output: process.output) }
            return json(try get("\(url(of: service, instance: instance))/health").text)["pid"] as? Int == Int(process.pid)
        }
    }

    func port(of service: String, instance: Int = 1) -> Int {
        ports["\(service)-\(instance)"]!
    }

    var orderURL: String { url(of: "order-service") }

    func url(of service: String, instance: Int = 1) -> String { "http://127.0.0.1:\(port(of: service, instance: instance))" }

    /// Starts (or restarts, on the same port) one instance.
    func start(_ service: String, instance: Int) throws {
        let name = "\(service)-\(instance)"
        if ports[name] == nil { ports[name] = try freePorts(1)[0] }
        let process = try ChildProcess(
            Executables.url(service), ["--var-dir", varDir.path],
            log: varDir.appendingPathComponent("\(name).log"),
            environment: ["PORT": String(ports[name]!), "INSTANCE_ID": name].merging(environment[service] ?? [:]) { _, own in own })
        if processes[service, default: []].count >= instance {
            processes[service]![instance - 1] = process
        } else {
            processes[service, default: []].append(process)
        }
    }

    func instances(of service: String) -> [ChildProcess] { processes[service] ?? [] }

    /// Runs `emporium` against this shop and returns its status and output.
    func emporium(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try run(Executables.url("emporium").path, arguments + ["--var-dir", varDir.path])
    }

    func generate(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try emporium(["generate", "--url", orderURL] + arguments)
    }

    func audit() throws -> (status: Int32, output: String) {
        try emporium(["audit"])
    }

    /// A writable handle on a service's database, for tests that break (and then repair) what a service relies on.
    func databaseForWriting(_ service: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        return try DatabaseQueue(path: varDir.appendingPathComponent("db/\(service).sqlite").path, configuration: configuration)
    }

    func database(_ service: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        return try DatabaseQueue(path: varDir.appendingPathComponent("db/\(service).sqlite").path, configuration: configuration)
    }

    /// Sends SIGTERM to every service, then to the cluster; returns each service's exit status.
    @discardableResult
    func stop() -> [String: Int32] {
        var statuses: [String: Int32] = [:]
        for (service, list) in processes {
            for (index, process) in list.enumerated() where process.isRunning {
                statuses["\(service)-\(index + 1)"] = process.stop(signal: SIGTERM)
            }
        }
        cluster.stop(signal: SIGTERM)
        return statuses
    }

    struct ChildExited: Error, CustomStringConvertible {
        let name: String
        let output: String
        var description: String { "\(name) exited; its log ends:\n\(output.suffix(2000))" }
    }

    deinit {
        for list in processes.values { for process in list where process.isRunning { process.stop(signal: SIGKILL) } }
        if cluster.isRunning { cluster.stop(signal: SIGKILL) }
        try? FileManager.default.removeItem(at: varDir)
    }
}

/// curl, for the few single requests a test makes by hand; none may take more than 30 seconds.
func curl(_ arguments: [String]) throws -> (status: Int32, output: String) {
    try run("/usr/bin/curl", ["--max-time", "30"] + arguments, timeout: .seconds(40))
}

/// A JSON object from a response body.
func json(_ text: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
}

func post(_ url: String, _ body: String, headers: [String] = []) throws -> (code: Int, body: [String: Any]) {
    var arguments = ["-s", "-w", "\n%{http_code}", "-X", "POST", url, "-H", "Content-Type: application/json", "--data-binary", body]
    for header in headers { arguments += ["-H", header] }
    let result = try curl(arguments)
    let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
    return (Int(lines.last ?? "") ?? 0, json(lines.dropLast().joined(separator: "\n")))
}

func get(_ url: String) throws -> (code: Int, text: String) {
    let result = try curl(["-s", "-w", "\n%{http_code}", url])
    let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
    return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
}

/// The audit passes; given the generator's summary, the audit's count of orders from the topics is the
/// generator's, placed, confirmed and cancelled alike.
func expectCleanAudit(_ shop: Shop, agreeingWith summary: [String: Any]? = nil) throws {
    let audit = try shop.audit()
    #expect(audit.status == 0, "audit failed:\n\(audit.output)")
    #expect(!audit.output.contains("✘"))
    guard let summary else { return }
    guard let counted = audit.output.firstMatch(of: /(\d+) orders: (\d+) confirmed, (\d+) cancelled/) else {
        Issue.record("the audit printed no order count:\n\(audit.output)")
        return
    }
    let cancelled = (summary["cancelledPaymentDeclined"] as? Int ?? -1) + (summary["cancelledOutOfStock"] as? Int ?? -1)
    #expect(Int(counted.1) == summary["placed"] as? Int, "placed: audit \(counted.1), generator \(summary)")
    #expect(Int(counted.2) == summary["confirmed"] as? Int, "confirmed: audit \(counted.2), generator \(summary)")
    #expect(Int(counted.3) == cancelled, "cancelled: audit \(counted.3), generator \(summary)")
}
