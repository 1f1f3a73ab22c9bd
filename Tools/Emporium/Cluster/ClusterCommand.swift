import ArgumentParser
import DomainEvents
import Foundation
import Kafka
import Logging
import ServiceLifecycle

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Host the embedded Kafka cluster (librdkafka's mock brokers) with Emporium's topics.",
        discussion: """
        Writes the bootstrap servers to <var-dir>/kafka/bootstrap and to stdout, then runs until SIGTERM or SIGINT.
        Data lives in memory only and each partition keeps its newest 5 MB.
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
        try FileManager.default.createDirectory(
            atPath: (bootstrapFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try (cluster.bootstrapServers + "\n").write(toFile: bootstrapFile, atomically: true, encoding: .utf8)
        FileHandle.standardOutput.write(Data((cluster.bootstrapServers + "\n").utf8))
        logger.info("embedded cluster up", metadata: [
            "brokers": "\(brokers)", "bootstrap": "\(cluster.bootstrapServers)",
            "topics": "\(topics.count) × \(partitions) partitions, rf \(replicationFactor)",
            "bootstrapFile": "\(bootstrapFile)",
        ])
        let group = ServiceGroup(
            services: [UntilShutdown()], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
        try? FileManager.default.removeItem(atPath: bootstrapFile)
        withExtendedLifetime(cluster) {}
        logger.info("embedded cluster stopped")
    }
}

/// Keeps a process up until graceful shutdown begins.
struct UntilShutdown: Service {
    func run() async throws {
        try? await gracefulShutdown()
    }
}
