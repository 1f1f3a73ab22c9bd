import AsyncHTTPClient
import DomainEvents
import Foundation
import GRDB
import Kafka
import NIOCore
import ServiceRuntime
import Synchronization

/// A shop a command starts and owns: an embedded cluster and service instances from one build, under a runtime
/// directory of its own, every process started here and stopped by PID. `emporium bench shop` measures one;
/// `emporium experiment` runs its experiments on one.
final class LocalShop: @unchecked Sendable {
    // @unchecked: owned by the one command that made it and used from one task at a time.

    /// One running service process.
    struct Instance {
        let service: String
        let name: String
        let port: Int
        let process: Process
        var url: String { "http://127.0.0.1:\(port)" }
        var pid: Int32 { process.processIdentifier }
    }

    let binDirectory: String
    let varDirectory: URL
    let http = HTTPClient(eventLoopGroupProvider: .singleton)
    private(set) var cluster: Process?
    /// An experiment reads these while a generator it started runs; a lock keeps each read whole.
    private let running = Mutex<[Instance]>([])
    /// Running instances, in the order they were started.
    var instances: [Instance] { running.withLock { $0 } }
    private var launched: [String: Int] = [:]
    /// Ports given to instances so far: one is not handed out twice, even after its instance stopped.
    private var handedOut: Set<Int> = []

    /// - Parameter binDirectory: where `emporium` and the services are; nil for this emporium's own directory.
    init(binDirectory: String?, label: String) throws {
        ChildProcesses.stopOnSignal()
        self.binDirectory = binDirectory ?? Self.ownBinDirectory
        varDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: varDirectory, withIntermediateDirectories: true)
    }

    /// The directory of this emporium, where the services are built beside it.
    static var ownBinDirectory: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    }

    var databaseDirectory: URL { varDirectory.appendingPathComponent("db") }

    func databasePath(of service: String) -> String { databaseDirectory.appendingPathComponent("\(service).sqlite").path }

    // MARK: Starting and stopping

    func startCluster() async throws {
        cluster = try launch("emporium", ["cluster", "--var-dir", varDirectory.path], log: "cluster")
        let bootstrap = varDirectory.appendingPathComponent("kafka/bootstrap").path
        try await waitFor("the embedded cluster", seconds: 30) { FileManager.default.fileExists(atPath: bootstrap) }
    }

    /// The cluster and one instance of each service, or `counts[service]` instances.
    func start(counts: [String: Int] = [:]) async throws {
        try await startCluster()
        for service in ShopLayout.services {
            for _ in 0..<(counts[service] ?? 1) { _ = try await startInstance(of: service, waitUntilHealthy: false) }
        }
        for instance in instances { try await waitUntilHealthy(instance) }
    }

    /// Starts an instance named `<service>-<n>`, n counting the instances of the service ever started here.
    @discardableResult
    func startInstance(of service: String, waitUntilHealthy wait: Bool = true) async throws -> Instance {
        launched[service, default: 0] += 1
        let number = launched[service]!
        let name = "\(service)-\(number)"
        let port = try freeLocalPort(avoiding: handedOut)
        handedOut.insert(port)
        let process = try launch(service, ["--var-dir", varDirectory.path, "--port", String(port), "--instance-id", name], log: name)
        let instance = Instance(service: service, name: name, port: port, process: process)
        running.withLock { $0.append(instance) }
        if wait { try await waitUntilHealthy(instance) }
        return instance
    }

    /// The first running instance of `service`, or a failure naming it.
    func instance(of service: String) throws -> Instance {
        guard let instance = instances.first(where: { $0.service == service }) else { throw CommandFailure("no \(service) instance is running") }
        return instance
    }

    /// Until `/health` answers from this very process (a stale one on the same port would name another PID).
    func waitUntilHealthy(_ instance: Instance) async throws {
        try await waitFor("\(instance.name) healthy", seconds: 60) { [self] in
            guard instance.process.isRunning else { throw CommandFailure("\(instance.name) exited; its log is \(logPath(instance.name))") }
            let health: HealthAnswer? = try? await get(instance.url + "/health")
            return health?.pid == Int(instance.pid)
        }
    }

    /// Stops an instance: SIGTERM and up to 15 s to leave gracefully, or SIGKILL at once (`kill -9`).
    func stop(_ instance: Instance, signal: Int32 = SIGTERM) {
        running.withLock { $0.removeAll { $0.name == instance.name } }
        Self.end(instance.process, signal: signal)
    }

    private static func end(_ process: Process, signal: Int32) {
        defer { ChildProcesses.forget(process.processIdentifier) }
        guard process.isRunning else { return }
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(15)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Services first, so that they flush to a live cluster; then the cluster.
    func stopAll() async {
        for instance in instances.reversed() { Self.end(instance.process, signal: SIGTERM) }
        running.withLock { $0 = [] }
        if let cluster { Self.end(cluster, signal: SIGTERM) }
        cluster = nil
        try? await http.shutdown()
    }

    // MARK: Reading the shop

    func kafkaConfiguration() throws -> KafkaConfiguration {
        try KafkaConfiguration.resolve(
            bootstrapServers: try String(contentsOf: varDirectory.appendingPathComponent("kafka/bootstrap"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines),
            overrides: [], environment: [:], varDirectory: varDirectory.path)
    }

    func status(of instance: Instance) async -> ServiceStatus? {
        try? await get(instance.url + "/status")
    }

    func get<Body: Decodable>(_ url: String) async throws -> Body {
        let response = try await http.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 4 << 20)
        guard response.status == .ok else { throw CommandFailure("GET \(url) answered \(response.status.code)") }
        return try JSONDecoder().decode(Body.self, from: Data(body.readableBytesView))
    }

    /// For each service with an instance running: its outbox empty and its database's stored positions at the
    /// end of every partition it consumes, twice in a row. The orders placed so far have then had all their
    /// effects. The databases, not the members' own lag, say so: a member that has not fetched a partition
    /// yet cannot tell how far behind it is.
    func waitUntilAtRest(seconds: Double = 120) async throws {
        let admin = try KafkaAdmin(configuration: try kafkaConfiguration())
        var quiet = 0
        try await waitFor("the shop at rest", seconds: seconds) { [self] in
            var atRest = true
            for service in Set(instances.map(\.service)) {
                let database = try AuditCommand.open(databasePath(of: service))
                let (outbox, stored) = try await database.read { db in
                    (try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? 0,
                     try Row.fetchAll(db, sql: "SELECT topic, partition, nextOffset FROM consumerOffset WHERE groupId = ?", arguments: [service])
                        .reduce(into: [TopicPartition: Int64]()) { $0[TopicPartition($1["topic"], $1["partition"])] = $1["nextOffset"] })
                }
                let ends = try await admin.offsets(of: ShopLayout.consumed[service, default: []].map(\.name))
                atRest = atRest && outbox == 0 && ends.allSatisfy { stored[$0.partition, default: 0] >= $0.high }
            }
            quiet = atRest ? quiet + 1 : 0
            return quiet >= 2
        }
    }

    // MARK: Orders and the audit

    /// Runs `emporium generate` against the first order-service instance and returns its summary. With
    /// `waitForOutcomes` false it only places the orders (and reports them pending).
    func generate(orders: Int, seed: UInt64, rate: Double? = nil, concurrency: Int = 16, customers: Int = 100, products: Int = 200,
                  waitForOutcomes: Bool = true, log: String? = nil) async throws -> Summary {
        guard let orderService = instances.first(where: { $0.service == "order-service" }) else {
            throw CommandFailure("no order-service instance is running to place orders with")
        }
        let name = log ?? "generate-\(seed)"
        var arguments = ["generate", "--url", orderService.url, "--orders", String(orders), "--customers", String(customers),
                         "--products", String(products), "--seed", String(seed), "--json", "--var-dir", varDirectory.path,
                         "--timeout", waitForOutcomes ? "300" : "0"]
        arguments += rate.map { ["--rate", String($0)] } ?? ["--concurrency", String(concurrency)]
        let generator = try launch("emporium", arguments, log: name)
        try await waitFor("the generator", seconds: 3_600) { !generator.isRunning }
        let output = (try? String(contentsOfFile: logPath(name), encoding: .utf8)) ?? ""
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let summary = try? JSONDecoder().decode(Summary.self, from: Data(line.utf8)) else {
            throw CommandFailure("the generator printed no summary:\n\(output.suffix(2_000))")
        }
        return summary
    }

    /// Runs `emporium audit` on this shop: whether it found nothing wrong, and what it printed.
    func audit() async throws -> (clean: Bool, output: String) {
        let audit = try launch("emporium", ["audit", "--var-dir", varDirectory.path], log: "audit")
        try await waitFor("the audit", seconds: 600) { !audit.isRunning }
        return (audit.terminationStatus == 0, (try? String(contentsOfFile: logPath("audit"), encoding: .utf8)) ?? "")
    }

    /// Runs `emporium <arguments>` on this shop to its end: its exit status and output.
    func emporium(_ arguments: [String], log: String) async throws -> (status: Int32, output: String) {
        try await runToEnd("emporium", arguments, log: log)
    }

    /// Runs one of this build's executables on this shop (`--var-dir` added) to its end: its exit status and output.
    func runToEnd(_ executable: String, _ arguments: [String], log: String) async throws -> (status: Int32, output: String) {
        let process = try launch(executable, arguments + ["--var-dir", varDirectory.path], log: log)
        try await waitFor("\(executable) \(arguments.first ?? "")", seconds: 300) { !process.isRunning }
        return (process.terminationStatus, (try? String(contentsOfFile: logPath(log), encoding: .utf8)) ?? "")
    }

    // MARK: Processes

    func logPath(_ log: String) -> String { varDirectory.appendingPathComponent("\(log).log").path }

    /// Starts an executable of this build with its output in `<var-dir>/<log>.log` and an environment of its own:
    /// nothing of the caller's Kafka, database or log settings leaks into the shop.
    func launch(_ executable: String, _ arguments: [String], log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binDirectory).appendingPathComponent(executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.filter { key, _ in
            !["KAFKA_BOOTSTRAP_SERVERS", "KAFKA_PROPERTIES_FILE", "DATABASE_PATH", "EMPORIUM_VAR", "GROUP_ID", "INSTANCE_ID", "PORT"].contains(key)
        }
        let path = logPath(log)
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        ChildProcesses.remember(process.processIdentifier)
        return process
    }

    /// Polls `condition` every 100 ms until it holds, or fails naming `what` after `seconds`.
    func waitFor(_ what: String, seconds: Double, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while !(try await condition()) {
            guard ContinuousClock.now < deadline else { throw CommandFailure("timed out after \(Int(seconds)) s waiting for \(what); logs in \(varDirectory.path)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func removeDirectory() {
        try? FileManager.default.removeItem(at: varDirectory)
    }
}

/// Every process a `LocalShop` started and has not yet stopped, so that a SIGINT or SIGTERM to this command
/// stops them too rather than leaving a shop running with no one to stop it.
enum ChildProcesses {
    private static let running = Mutex<Set<pid_t>>([])
    private static let handlers = Mutex<[any DispatchSourceSignal]>([])
    private static let interrupted = Atomic(false)

    /// Whether a signal arrived: what failed since then failed because its processes were being stopped.
    static var isInterrupted: Bool { interrupted.load(ordering: .acquiring) }

    /// For a command that saw something fail: if a signal caused it, waits for the handler to finish stopping
    /// the shop and exit, rather than reporting the failure as if it were the shop's.
    static func yieldIfInterrupted() async {
        while isInterrupted { try? await Task.sleep(for: .seconds(1)) }
    }

    static func remember(_ pid: pid_t) { running.withLock { _ = $0.insert(pid) } }
    static func forget(_ pid: pid_t) { running.withLock { _ = $0.remove(pid) } }

    /// Installs the handlers once: SIGTERM to every child, up to 15 s for them to go, SIGKILL, then exit.
    static func stopOnSignal() {
        handlers.withLock { handlers in
            guard handlers.isEmpty else { return }
            for signalNumber in [SIGINT, SIGTERM] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler {
                    interrupted.store(true, ordering: .releasing)
                    let children = running.withLock { $0 }
                    FileHandle.standardError.write(Data("stopping \(children.count) processes this command started\n".utf8))
                    for pid in children { kill(pid, SIGTERM) }
                    let deadline = Date().addingTimeInterval(15)
                    while children.contains(where: { kill($0, 0) == 0 }) && Date() < deadline { usleep(50_000) }
                    for pid in children where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
                    exit(128 + signalNumber)
                }
                source.resume()
                handlers.append(source)
            }
        }
    }
}

/// The part of `GET /health` that tells one process from another.
private struct HealthAnswer: Decodable {
    let pid: Int
}

/// A port free on 127.0.0.1 right now, below the kernel's ephemeral range: a port from that range, freed for a
/// service to bind a moment later, can meanwhile go to one of the many outgoing connections to the brokers
/// (it happened with 13 instances starting at once).
func freeLocalPort(avoiding taken: Set<Int> = []) throws -> Int {
    let ephemeral = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
        .flatMap { Int($0.split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") } ?? 32768
    let range = 20_000..<max(20_100, ephemeral)
    var candidate = range.lowerBound + Int(getpid()) % range.count
    for _ in 0..<range.count {
        candidate = candidate + 1 < range.upperBound ? candidate + 1 : range.lowerBound
        if !taken.contains(candidate), canBind(candidate) { return candidate }
    }
    throw CommandFailure("no free port between \(range.lowerBound) and \(range.upperBound)")
}

private func canBind(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}
