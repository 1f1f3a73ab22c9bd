import ArgumentParser
import DomainEvents
import Foundation
import GRDB
import Kafka

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check every invariant of the event contract against the topics and the services' databases.",
        discussion: """
        First waits (up to --settle seconds) until the shop is at rest: every service's outbox empty and its stored
        offsets at the end of the topics it consumes. Then reads every topic from the beginning, and prints one line
        per invariant; exits 1 on any violation, or if a database cannot be read.
        """)

    @Option(help: "Directory of the services' databases (default: <var-dir>/db).")
    var databases: String?

    @Option(help: "Directory of notification-service's emails (default: <var-dir>/mail).")
    var mail: String?

    @Option(help: "Seconds to wait for the shop to come to rest before auditing.")
    var settle: Double = 60

    @OptionGroup var kafka: KafkaOptions

    func run() async throws {
        let configuration = try kafka.resolve()
        let dbDirectory = databases ?? "\(kafka.varDir)/db"
        let databases = try Dictionary(uniqueKeysWithValues: ShopLayout.services.map { service in
            (service, try Self.open("\(dbDirectory)/\(service).sqlite"))
        })
        let admin = try KafkaAdmin(configuration: configuration)
        if !(try await waitUntilSettled(databases, admin: admin)) {
            print("! the shop did not come to rest within \(settle) s; auditing what is there")
        }
        let reader = TopicReader(configuration: configuration)
        let group = "emporium-audit-\(UUID().uuidString.prefix(8))"
        var log: [Topic: [ConsumedMessage]] = [:]
        var deadLetters: [ConsumedMessage] = []
        for topic in Topic.allCases {
            log[topic] = try await reader.readToEnd(topic.name, group: group, timeout: .seconds(120))
            deadLetters += try await reader.readToEnd(topic.deadLetterName, group: group, timeout: .seconds(120))
        }
        let input = AuditInput(
            log: log, deadLetters: deadLetters,
            partitions: try await admin.partitionCounts(of: Topic.allCases.map(\.name)),
            stock: try await Self.column("SELECT productId, available FROM stock", in: databases["inventory-service"]!),
            holds: try await Self.column("SELECT customerId, heldCents FROM customerCredit", in: databases["payment-service"]!),
            emailFiles: (try? FileManager.default.contentsOfDirectory(atPath: mail ?? "\(kafka.varDir)/mail")) ?? [])
        let results = Audit(input).run()
        for result in results { print(result.line) }
        let perTopic = Dictionary(grouping: deadLetters, by: \.topic).mapValues(\.count)
        print("  dead letters: " + Topic.allCases.map { "\($0.deadLetterName) \(perTopic[$0.deadLetterName] ?? 0)" }.joined(separator: ", "))
        if results.contains(where: { !$0.violations.isEmpty }) { throw ExitCode.failure }
    }

    /// A database the audit must read; one that cannot be opened ends the audit, rather than skipping its checks.
    static func open(_ path: String) throws -> DatabaseQueue {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("cannot audit without \(path): give the services' database directory with --databases")
        }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        return try DatabaseQueue(path: path, configuration: configuration)
    }

    static func column(_ sql: String, in database: DatabaseQueue) async throws -> [String: Int] {
        try await database.read { db in
            Dictionary(try Row.fetchAll(db, sql: sql).map { ($0[0] as String, $0[1] as Int) }) { first, _ in first }
        }
    }

    /// True once every outbox is empty and every service's stored offsets reach the end of what it consumes.
    private func waitUntilSettled(_ databases: [String: DatabaseQueue], admin: KafkaAdmin) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(settle)
        while ContinuousClock.now < deadline {
            if try await isSettled(databases, admin: admin) { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    private func isSettled(_ databases: [String: DatabaseQueue], admin: KafkaAdmin) async throws -> Bool {
        for (service, database) in databases {
            let (outbox, stored) = try await database.read { db in
                (try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? 0,
                 try Row.fetchAll(db, sql: "SELECT topic, partition, nextOffset FROM consumerOffset WHERE groupId = ?", arguments: [service])
                    .reduce(into: [TopicPartition: Int64]()) { $0[TopicPartition($1["topic"], $1["partition"])] = $1["nextOffset"] })
            }
            guard outbox == 0 else { return false }
            let ends = try await admin.offsets(of: ShopLayout.consumed[service]!.map(\.name))
            guard ends.allSatisfy({ $0.high == 0 || stored[$0.partition, default: 0] >= $0.high }) else { return false }
        }
        return true
    }
}
