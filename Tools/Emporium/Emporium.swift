import ArgumentParser
import Foundation
import Logging

@main
struct Emporium: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emporium",
        abstract: "Everything around Emporium's services: the embedded Kafka cluster, orders, the audit, status, dead letters, benchmarks and experiments.",
        subcommands: [ClusterCommand.self, GenerateCommand.self, AuditCommand.self, StatusCommand.self, ConsoleCommand.self, DeadLetterCommand.self, BenchCommand.self, ExperimentCommand.self]
    )

    static func main() async {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
            return handler
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
