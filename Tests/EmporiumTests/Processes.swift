import Foundation
import Synchronization
@_exported import TestSupport

/// Starts Emporium's executables as child processes and stops them by PID.
enum Executables {
    /// Where `swift build` put the executables: `$EMPORIUM_BIN_DIR`, else this checkout's debug build.
    static var directory: URL {
        if let path = ProcessInfo.processInfo.environment["EMPORIUM_BIN_DIR"] { return URL(fileURLWithPath: path) }
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug")
    }

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }
}

/// Settings a child must not inherit from whoever runs the tests: each test builds its children's environment.
let inheritedSettingsDropped: Set<String> = [
    "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_PROPERTIES_FILE", "DATABASE_PATH", "LOG_LEVEL", "GROUP_ID", "INSTANCE_ID",
    "PORT", "EMPORIUM_VAR", "SMTP_URL", "MAIL_DIR",
]

func childEnvironment(_ own: [String: String]) -> [String: String] {
    ProcessInfo.processInfo.environment.filter { !inheritedSettingsDropped.contains($0.key) }.merging(own) { _, new in new }
}

/// Every child a test run starts is listed under this directory by PID until it is stopped, so a run that was
/// killed midway (its children orphaned, still holding CPU) is cleaned up by the next run, by PID.
enum ChildRegistry {
    static let directory = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-test-children")

    private static let swept = Mutex(false)

    /// Kills the children a previous, interrupted run left behind; once per test process.
    static func sweepLeftovers() {
        guard swept.withLock({ done in defer { done = true }; return !done }) else { return }
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for file in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] {
            let record = directory.appendingPathComponent(file)
            defer { try? FileManager.default.removeItem(at: record) }
            guard let pid = Int32(file), let executable = try? String(contentsOf: record, encoding: .utf8),
                  let running = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe"),
                  // A rebuild between the runs replaces the file, and the kernel then names it "… (deleted)".
                  running == executable || running == executable + " (deleted)" else { continue }
            kill(pid, SIGKILL)
        }
    }

    static func add(_ pid: Int32, executable: URL) {
        try? executable.resolvingSymlinksInPath().path.write(to: directory.appendingPathComponent(String(pid)), atomically: true, encoding: .utf8)
    }

    static func remove(_ pid: Int32) {
        try? FileManager.default.removeItem(at: directory.appendingPathComponent(String(pid)))
    }
}

/// A child process whose output goes to a log file; `stop` signals it by PID and reaps it.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: `Process` is not Sendable; this wrapper is only used from one test task at a time.
    let process = Process()
    let log: URL

    init(_ executable: URL, _ arguments: [String], log: URL, environment: [String: String] = [:]) throws {
        ChildRegistry.sweepLeftovers()
        self.log = log
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.executableURL = executable
        process.arguments = arguments
        process.environment = childEnvironment(environment)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        ChildRegistry.add(process.processIdentifier, executable: executable)
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Sends `signal` and waits for the process to exit, at most `grace`, then kills it; returns its exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, grace: Duration = .seconds(20)) -> Int32 {
        if process.isRunning { kill(pid, signal) }
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
        ChildRegistry.remove(pid)
        return process.terminationStatus
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    deinit {
        if process.isRunning { kill(pid, SIGKILL) }
        ChildRegistry.remove(pid)
    }
}

/// Runs a command to completion and returns its status and its standard output and error, together. It is
/// killed if it runs longer than `timeout`, which then throws. `environment` replaces the test's own; nil
/// builds one as for every child.
func run(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil, input: URL? = nil, timeout: Duration = .seconds(600)
) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = environment ?? childEnvironment([:])
    if let input { process.standardInput = try FileHandle(forReadingFrom: input) }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let timedOut = Mutex(false)
    let timer = DispatchWorkItem { [process] in
        if process.isRunning {
            timedOut.withLock { $0 = true }
            // Its own children (a browser's) may hold the output pipe open: end its process group too, if it has one.
            kill(-process.processIdentifier, SIGKILL)
            kill(process.processIdentifier, SIGKILL)
        }
    }
    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(timeout.components.seconds * 1000)), execute: timer)
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    timer.cancel()
    let output = String(decoding: data, as: UTF8.self)
    if timedOut.withLock({ $0 }) { throw TimedOut(what: "\(executable) \(arguments.joined(separator: " ")) (killed after \(timeout)); it printed:\n\(output.suffix(2000))") }
    return (process.terminationStatus, output)
}

/// Ports for a test's servers, chosen by the kernel: each is bound on 127.0.0.1 with port 0 and released, all
/// at once so that no two are the same.
func freePorts(_ count: Int) throws -> [Int] {
    var sockets: [Int32] = []
    defer { sockets.forEach { close($0) } }
    return try (0..<count).map { _ in
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        sockets.append(fd)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A port P such that P…P+3 and P+100…P+103 are free right now: the layout `deploy/run.sh --first-port` uses
/// for up to two instances of each service. Taken below the kernel's ephemeral range, so that the brokers and
/// clients started meanwhile (which get ephemeral ports) cannot land on it.
func freePortBlock() throws -> Int {
    let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
        .split(whereSeparator: \.isWhitespace).compactMap { Int($0) } ?? []
    let ceiling = min(range.first ?? 32_768, 32_768) - 104
    let start = 20_000 + Int(getpid() % 400) * 20
    for candidate in Array(stride(from: start, to: ceiling, by: 20)) + Array(stride(from: 20_000, to: start, by: 20)) {
        if (Array(candidate...candidate + 3) + Array(candidate + 100...candidate + 103)).allSatisfy(isFree) { return candidate }
    }
    throw POSIXError(.EADDRINUSE)
}

private func isFree(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

func temporaryDirectory(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-\(name)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A TMPDIR for a command that starts a shop of its own under `$TMPDIR` (`bench shop`, `experiment`): every
/// process it starts names the directory on its command line, so a test can tell whether any was left running,
/// and the next test run stops whatever an interrupted one left there.
struct ScopedTemporaryDirectory {
    static let parent = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-test-scoped")
    private static let swept = Mutex(false)

    let url: URL

    init() throws {
        if Self.swept.withLock({ done in defer { done = true }; return !done }) {
            _ = try run("/usr/bin/pkill", ["-KILL", "-f", Self.parent.path + "/"], timeout: .seconds(30))
            try? FileManager.default.removeItem(at: Self.parent)
        }
        url = Self.parent.appendingPathComponent(UUID().uuidString.prefix(8).lowercased())
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    var environment: [String: String] { childEnvironment(["TMPDIR": url.path]) }

    /// PIDs of processes still running with this directory on their command line.
    func processesLeft() throws -> String { try run("/usr/bin/pgrep", ["-f", url.path + "/"]).output }
}

/// `emporium cluster` in `varDir`, once it has written its bootstrap file.
func startEmbeddedCluster(in varDir: URL, partitions: Int) async throws -> ChildProcess {
    let cluster = try ChildProcess(
        Executables.url("emporium"), ["cluster", "--var-dir", varDir.path, "--partitions", String(partitions)],
        log: varDir.appendingPathComponent("cluster.log"))
    let bootstrapFile = varDir.appendingPathComponent("kafka/bootstrap")
    do {
        try await waitUntil(.seconds(20), "the bootstrap file") { FileManager.default.fileExists(atPath: bootstrapFile.path) }
    } catch {
        cluster.stop(signal: SIGKILL)
        throw error
    }
    return cluster
}
