import ArgumentParser
import DomainEvents
import Foundation
import Hummingbird
import Kafka
import Logging
import NIOCore
import ServiceLifecycle
import ServiceRuntime

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Host the embedded Kafka cluster, and inject broker faults into it while it runs.",
        subcommands: [Serve.self, BrokerFault.self, MoveLeader.self],
        defaultSubcommand: Serve.self
    )

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            abstract: "Host the embedded Kafka cluster (librdkafka's mock brokers) with Emporium's topics (the default).",
            discussion: """
            Writes the bootstrap servers to <var-dir>/kafka/bootstrap and to stdout, then runs until SIGTERM or SIGINT.
            Data lives in memory only and each partition keeps its newest 5 MB. Fault commands (`emporium cluster
            broker`, `emporium cluster leader`) reach it through a control endpoint on 127.0.0.1 whose URL it writes
            to <var-dir>/kafka/control.
            """
        )

        @Option(help: "Number of brokers.")
        var brokers: Int32 = 3

        @Option(help: "Partitions per topic.")
        var partitions: Int32 = 12

        @Option(help: "Replication factor per topic (at most the broker count).")
        var replicationFactor: Int32 = 3

        @Option(parsing: .upToNextOption, help: "Topics to create instead of Emporium's (orders, payments, inventory, notifications and their .dlq twins).")
        var topics: [String] = Topic.allNames

        @Option(help: "Emporium's runtime directory (default: $EMPORIUM_VAR, else ./var).")
        var varDir: String = ProcessInfo.processInfo.environment["EMPORIUM_VAR"] ?? "var"

        func validate() throws {
            guard brokers >= 1 else { throw ValidationError("--brokers must be at least 1") }
            guard partitions >= 1 else { throw ValidationError("--partitions must be at least 1") }
            guard (1...brokers).contains(replicationFactor) else {
                throw ValidationError("--replication-factor must be between 1 and --brokers (\(brokers))")
            }
        }

        func run() async throws {
            let logger = Logger(label: "emporium.cluster")
            let cluster = try EmbeddedCluster(brokers: brokers)
            for name in topics {
                try cluster.createTopic(TopicSpec(name: name, partitions: partitions, replicationFactor: replicationFactor))
            }
            let bootstrapFile = KafkaConfiguration.embeddedBootstrapFile(varDirectory: varDir)
            let controlFile = ClusterControl.file(varDirectory: varDir)
            try FileManager.default.createDirectory(
                atPath: (bootstrapFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let control = Application(
                router: ClusterControl(cluster: cluster, partitions: partitions, topics: topics).router(),
                configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { channel in
                    let url = "http://127.0.0.1:\(channel.localAddress?.port ?? 0)"
                    try? (url + "\n").write(toFile: controlFile, atomically: true, encoding: .utf8)
                    // The bootstrap file comes last: whoever waits on it finds the control endpoint too.
                    try? (cluster.bootstrapServers + "\n").write(toFile: bootstrapFile, atomically: true, encoding: .utf8)
                    FileHandle.standardOutput.write(Data((cluster.bootstrapServers + "\n").utf8))
                    logger.info("embedded cluster up", metadata: [
                        "brokers": "\(brokers)", "bootstrap": "\(cluster.bootstrapServers)",
                        "topics": "\(topics.count) × \(partitions) partitions, rf \(replicationFactor)",
                        "bootstrapFile": "\(bootstrapFile)", "control": "\(url)",
                    ])
                },
                logger: logger)
            let group = ServiceGroup(services: [control], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            try await group.run()
            try? FileManager.default.removeItem(atPath: bootstrapFile)
            try? FileManager.default.removeItem(atPath: controlFile)
            withExtendedLifetime(cluster) {}
            logger.info("embedded cluster stopped")
        }
    }

    struct BrokerFault: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "broker",
            abstract: "Take a broker of the running embedded cluster off the network, or bring it back.",
            discussion: """
            `emporium cluster broker 2 down`: connections to broker 2 fail until `emporium cluster broker 2 up`.
            Partitions it leads stay unavailable meanwhile (the embedded cluster elects no new leader by itself:
            `emporium cluster leader` moves one).
            """)

        @Argument(help: "The broker's ID (1 to the broker count).")
        var broker: Int32

        @Argument(help: "down or up.")
        var state: BrokerState

        @Option(help: "Emporium's runtime directory (default: $EMPORIUM_VAR, else ./var).")
        var varDir: String = ProcessInfo.processInfo.environment["EMPORIUM_VAR"] ?? "var"

        func run() async throws {
            print(try await ClusterControl.send("/brokers/\(broker)/\(state.rawValue)", varDirectory: varDir))
        }
    }

    struct MoveLeader: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "leader",
            abstract: "Move a partition's leadership to another broker of the running embedded cluster.")

        @Argument(help: "The topic.")
        var topic: String

        @Argument(help: "The partition.")
        var partition: Int32

        @Argument(help: "The broker to lead it.")
        var broker: Int32

        @Option(help: "Emporium's runtime directory (default: $EMPORIUM_VAR, else ./var).")
        var varDir: String = ProcessInfo.processInfo.environment["EMPORIUM_VAR"] ?? "var"

        func run() async throws {
            print(try await ClusterControl.send("/topics/\(topic)/partitions/\(partition)/leader/\(broker)", varDirectory: varDir))
        }
    }
}

enum BrokerState: String, ExpressibleByArgument, CaseIterable {
    case down, up
}
