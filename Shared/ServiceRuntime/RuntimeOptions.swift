import ArgumentParser
import Foundation
import Kafka
import Logging

/// The options every service takes, each with an environment variable behind it.
public struct RuntimeOptions: ParsableArguments {
    @Option(help: "Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else the embedded cluster's var/kafka/bootstrap).")
    var bootstrapServers: String?

    @Option(name: .customLong("kafka-property"), help: "A librdkafka property as key=value; repeatable. Prefix with producer. or consumer. to scope it.")
    var kafkaProperties: [String] = []

    @Option(help: "Runtime directory (default: $EMPORIUM_VAR, else ./var).")
    var varDir: String?

    @Option(help: "SQLite database file (default: $DATABASE_PATH, else <var-dir>/db/<service>.sqlite). Instances of one service share it.")
    var database: String?

    @Option(help: "Consumer group (default: $GROUP_ID, else the service's name).")
    var groupId: String?

    @Option(help: "This instance's name, for logs and Kafka's client.id (default: $INSTANCE_ID, else <service>-<pid>).")
    var instanceId: String?

    @Option(help: "HTTP port (default: $PORT, else the service's own).")
    var port: Int?

    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical (default: $LOG_LEVEL, else info).")
    var logLevel: String?

    @Option(help: "Hours to remember processed events and ended work before pruning them; keep it above the consumed topics' and dead-letter topics' retention (default: $RETENTION_HOURS, else 168).")
    var retentionHours: Double?

    public init() {}

    /// Resolves flags over the environment over defaults; a missing or wrong setting fails naming it.
    public func resolve(service: String, defaultPort: Int, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> RuntimeSettings {
        let varDirectory = varDir ?? environment["EMPORIUM_VAR"] ?? "var"
        let portValue = try port ?? environment["PORT"].map { text in
            guard let value = Int(text) else { throw SettingError(name: "PORT", value: text, expected: "a port number from 1 to 65535") }
            return value
        } ?? defaultPort
        guard (1...65535).contains(portValue) else {
            throw SettingError(name: port != nil ? "--port" : "PORT", value: String(portValue), expected: "a port number from 1 to 65535")
        }
        let levelText = logLevel ?? environment["LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: levelText) else {
            throw SettingError(name: logLevel != nil ? "--log-level" : "LOG_LEVEL", value: levelText, expected: "trace, debug, info, notice, warning, error or critical")
        }
        let instance = instanceId ?? environment["INSTANCE_ID"] ?? "\(service)-\(getpid())"
        let retentionText = retentionHours.map { String($0) } ?? environment["RETENTION_HOURS"] ?? "168"
        guard let hours = Double(retentionText), hours.isFinite, hours > 0, hours <= 1_000_000 else {
            throw SettingError(name: retentionHours != nil ? "--retention-hours" : "RETENTION_HOURS", value: retentionText,
                               expected: "a number of hours above 0")
        }
        var kafka = try KafkaConfiguration.resolve(
            bootstrapServers: bootstrapServers, overrides: kafkaProperties, environment: environment, varDirectory: varDirectory)
        if kafka.properties["client.id"] == nil { kafka.properties["client.id"] = instance }
        return RuntimeSettings(
            service: service,
            varDirectory: varDirectory,
            databasePath: database ?? environment["DATABASE_PATH"] ?? "\(varDirectory)/db/\(service).sqlite",
            group: groupId ?? environment["GROUP_ID"] ?? service,
            instanceID: instance,
            port: portValue,
            logLevel: level,
            kafka: kafka,
            retention: .milliseconds(Int64(hours * 3_600_000)))
    }
}

/// A service's resolved settings.
public struct RuntimeSettings: Sendable {
    public var service: String
    public var varDirectory: String
    public var databasePath: String
    public var group: String
    public var instanceID: String
    public var port: Int
    public var logLevel: Logger.Level
    public var kafka: KafkaConfiguration
    /// How long processed events and ended work are remembered (`Pruner`).
    public var retention: Duration

    public init(
        service: String, varDirectory: String, databasePath: String, group: String, instanceID: String, port: Int,
        logLevel: Logger.Level, kafka: KafkaConfiguration, retention: Duration = .seconds(168 * 3600)
    ) {
        self.retention = retention
        self.service = service
        self.varDirectory = varDirectory
        self.databasePath = databasePath
        self.group = group
        self.instanceID = instanceID
        self.port = port
        self.logLevel = logLevel
        self.kafka = kafka
    }
}

/// A setting with a value that cannot be used.
public struct SettingError: Error, CustomStringConvertible {
    public let name: String
    public let value: String
    public let expected: String

    public init(name: String, value: String, expected: String) {
        self.name = name
        self.value = value
        self.expected = expected
    }

    public var description: String { "invalid setting \(name)='\(value)': expected \(expected)" }
}
