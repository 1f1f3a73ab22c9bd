import Foundation
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

/// A child process whose output goes to a log file; `stop` signals it by PID and reaps it.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: `Process` is not Sendable; this wrapper is only used from one test task at a time.
    let process = Process()
    let log: URL

    init(_ executable: URL, _ arguments: [String], log: URL, environment: [String: String] = [:]) throws {
        self.log = log
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.executableURL = executable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Sends `signal` and waits for the process to exit; returns its exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(pid, signal) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    deinit {
        if process.isRunning { kill(pid, SIGKILL) }
    }
}

/// Runs a command to completion and returns its status and its standard output and error, together.
/// `environment` replaces the test's own; nil inherits it.
func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

func temporaryDirectory(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-\(name)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
