import Foundation
import Testing

@Suite struct ExecutableTests {
    @Test(arguments: ["emporium", "order-service", "payment-service", "inventory-service", "notification-service"])
    func everyExecutableExplainsItselfWithHelp(name: String) throws {
        let help = try run(Executables.url(name).path, ["--help"])
        #expect(help.status == 0)
        #expect(help.output.contains("USAGE"))
    }

    @Test func aServiceWithAWrongSettingStopsNamingIt() throws {
        let process = Process()
        process.executableURL = Executables.url("payment-service")
        process.environment = ProcessInfo.processInfo.environment.merging(["PORT": "http", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"]) { _, new in new }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        #expect(output.contains("invalid setting PORT='http': expected a port number"))
    }

    @Test func aServiceWithNoKafkaToFindSaysWhereToSetIt() throws {
        let varDir = try temporaryDirectory("no-kafka")
        defer { try? FileManager.default.removeItem(at: varDir) }
        var environment = ProcessInfo.processInfo.environment
        environment["KAFKA_BOOTSTRAP_SERVERS"] = nil
        let process = Process()
        process.executableURL = Executables.url("order-service")
        process.arguments = ["--var-dir", varDir.path]
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        #expect(output.contains("KAFKA_BOOTSTRAP_SERVERS") && output.contains("emporium cluster"))
    }
}
