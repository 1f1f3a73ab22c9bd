import ArgumentParser
import Foundation
import Kafka

/// Options every command that talks to Kafka shares.
struct KafkaOptions: ParsableArguments {
    @Option(help: "Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else the embedded cluster's var/kafka/bootstrap).")
    var bootstrapServers: String?

    @Option(name: .customLong("kafka-property"), help: "A librdkafka property as key=value; repeatable. Prefix with producer. or consumer. to scope it.")
    var kafkaProperties: [String] = []

    @Option(help: "Emporium's runtime directory (default: $EMPORIUM_VAR, else ./var).")
    var varDir: String = ProcessInfo.processInfo.environment["EMPORIUM_VAR"] ?? "var"
}

extension KafkaOptions {
    func resolve() throws -> KafkaConfiguration {
        try KafkaConfiguration.resolve(bootstrapServers: bootstrapServers, overrides: kafkaProperties, varDirectory: varDir)
    }
}
