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
        var environment = ProcessInfo.processInfo.environment
        environment["PORT"] = "http"
        environment["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
        let result = try run(Executables.url("payment-service").path, [], environment: environment)
        #expect(result.status != 0)
        #expect(result.output.contains("invalid setting PORT='http': expected a port number"))
    }

    @Test func aServiceWithNoKafkaToFindSaysWhereToSetIt() throws {
        let varDir = try temporaryDirectory("no-kafka")
        defer { try? FileManager.default.removeItem(at: varDir) }
        var environment = ProcessInfo.processInfo.environment
        environment["KAFKA_BOOTSTRAP_SERVERS"] = nil
        let result = try run(Executables.url("order-service").path, ["--var-dir", varDir.path], environment: environment)
        #expect(result.status != 0)
        #expect(result.output.contains("KAFKA_BOOTSTRAP_SERVERS") && result.output.contains("emporium cluster"))
    }
}
