import ArgumentParser
import DomainEvents
import Foundation
import GRDB
import Kafka
import ServiceRuntime

struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Inspect and replay dead letters.",
        subcommands: [List.self, Replay.self, Parked.self]
    )

    /// `orders` and `orders.dlq` both name the dead-letter topic of `orders`.
    static func deadLetterTopic(_ name: String) throws -> String {
        let source = name.hasSuffix(".dlq") ? String(name.dropLast(4)) : name
        guard let topic = Topic(rawValue: source) else {
            throw ValidationError("unknown topic '\(name)': expected one of \(Topic.allCases.map(\.name).joined(separator: ", "))")
        }
        return topic.deadLetterName
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show every dead letter of a topic with its reason.")

        @Argument(help: "The source topic (orders, payments, inventory, notifications) or its .dlq topic.")
        var topic: String

        @Flag(help: "One JSON object per dead letter.")
        var json = false

        @OptionGroup var kafka: KafkaOptions

        func run() async throws {
            let configuration = try kafka.resolve()
            let name = try DeadLetterCommand.deadLetterTopic(topic)
            let letters = try await TopicReader(configuration: configuration)
                .readToEnd(name, group: "emporium-dlq-list-\(UUID().uuidString.prefix(8))")
            if json {
                for letter in letters { print(Self.json(letter)) }
                return
            }
            print("\(letters.count) dead letters in \(name)")
            for letter in letters {
                let source = "\(DeadLetter.added(DeadLetter.Header.sourceTopic, to: letter) ?? "?")[\(DeadLetter.added(DeadLetter.Header.sourcePartition, to: letter) ?? "?")]@\(DeadLetter.added(DeadLetter.Header.sourceOffset, to: letter) ?? "?")"
                print("\(DeadLetter.added(DeadLetter.Header.failedAt, to: letter) ?? "-")  \(source)  key=\(letter.keyString ?? "<none>")  type=\(letter.header(Wire.Header.eventType) ?? "<none>")  group=\(DeadLetter.added(DeadLetter.Header.group, to: letter) ?? "?")")
                print("    \(DeadLetter.added(DeadLetter.Header.reason, to: letter) ?? "no reason given")")
            }
        }

        static func json(_ letter: ConsumedMessage) -> String {
            let object: [String: Any] = [
                "partition": letter.partition, "offset": letter.offset, "key": letter.keyString as Any,
                "headers": Dictionary(letter.headers.map { ($0.name, String(decoding: $0.value, as: UTF8.self)) }) { _, last in last },
                "value": String(decoding: letter.value, as: UTF8.self),
            ]
            let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            return String(decoding: data, as: UTF8.self)
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send dead letters back to their source topic, once the cause is fixed.",
            discussion: """
            Each failed message goes back once with its original key, value and headers, however many consumer
            groups dead-lettered it; groups that had processed it skip the copy by its eventId, and a group whose
            handler had failed on it applies it now. An order cancelled meanwhile is not charged or reserved late.
            The replay group moves past a letter only once its copy is delivered, so a second replay sends only
            letters that arrived since, and a replay that stopped midway sends the rest. A letter goes back only to
            the topic whose dead-letter topic holds it, and only if the headers its consumer added name that topic.
            A letter older than the services' retention is not sent: groups that had processed its event may have
            forgotten it since, and would apply it again.
            """
        )

        @Argument(help: "The source topic (orders, payments, inventory, notifications) or its .dlq topic.")
        var topic: String

        @Option(help: "The services' --retention-hours: older letters are not replayed.")
        var retentionHours: Double = 168

        @OptionGroup var kafka: KafkaOptions

        func run() async throws {
            let configuration = try kafka.resolve()
            let name = try DeadLetterCommand.deadLetterTopic(topic)
            let oldest = Timestamp.format(Date().addingTimeInterval(-retentionHours * 3600))
            var tooOld = 0
            let producer = try KafkaProducer(configuration: configuration)
            var sources = Set<String>()
            var letters = 0
            var sent = 0
            var refused = 0
            do {
                // Each batch is sent and delivered before the replay group's offsets move past it: a replay that
                // stops midway sends the rest next time, and never skips a letter it did not deliver.
                try await TopicReader(configuration: configuration).forEachBatchToEnd(name, group: "emporium-dlq-replay") { batch in
                    letters += batch.count
                    var originals: [OutgoingMessage] = []
                    for letter in batch {
                        guard let original = DeadLetter.original(of: letter) else {
                            refused += 1
                            continue
                        }
                        guard let failedAt = DeadLetter.added(DeadLetter.Header.failedAt, to: letter), Timestamp.isValid(failedAt) else {
                            refused += 1
                            continue
                        }
                        guard failedAt >= oldest else {
                            tooOld += 1
                            continue
                        }
                        let source = [DeadLetter.Header.sourceTopic, DeadLetter.Header.sourcePartition, DeadLetter.Header.sourceOffset]
                            .map { DeadLetter.added($0, to: letter) ?? "" }.joined(separator: "/")
                        if sources.insert(source).inserted { originals.append(original) }
                    }
                    for result in await producer.send(originals) { _ = try result.get() }
                    sent += originals.count
                }
            } catch {
                await producer.close()
                throw CommandFailure("replay stopped after \(sent) messages; the rest are sent by the next replay: \(error)")
            }
            await producer.close()
            print("replayed \(sent) message\(sent == 1 ? "" : "s") from \(letters) dead letter\(letters == 1 ? "" : "s") in \(name)")
            if tooOld > 0 {
                print("not replayed: \(tooOld) letter\(tooOld == 1 ? "" : "s") dead-lettered more than \(retentionHours) hours ago, past the services' retention")
            }
            if refused > 0 {
                print("not replayed: \(refused) message\(refused == 1 ? "" : "s") in \(name) that no consumer of its topic dead-lettered"
                      + " (no dlq-source-topic or dlq-failed-at header of its own, or a source naming another topic)")
            }
        }
    }

    struct Parked: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show outbox rows Kafka refused for good (too large, invalid), parked in each service's database.",
            discussion: """
            A service's relay parks a row Kafka can never take as it is, with the reason, so that the rows behind it
            are published. Such a row is an event its consumers never see: the reason says what to fix.
            """)

        @Option(help: "Directory of the services' databases (default: <var-dir>/db).")
        var databases: String?

        @Option(help: "Emporium's runtime directory (default: $EMPORIUM_VAR, else ./var).")
        var varDir: String = ProcessInfo.processInfo.environment["EMPORIUM_VAR"] ?? "var"

        func run() async throws {
            let directory = databases ?? "\(varDir)/db"
            var total = 0
            for service in ShopLayout.services {
                let path = "\(directory)/\(service).sqlite"
                guard FileManager.default.fileExists(atPath: path) else { continue }
                let database = try AuditCommand.open(path)
                let rows = try database.read { db in
                    try Row.fetchAll(db, sql: "SELECT topic, key, length(value) AS bytes, reason, parkedAt FROM parkedOutboxRow ORDER BY id")
                }
                total += rows.count
                for row in rows {
                    let key = (row["key"] as Data?).map { String(decoding: $0, as: UTF8.self) } ?? "<none>"
                    print("\(row["parkedAt"] as String)  \(service)  \(row["topic"] as String)  key=\(key)  \(row["bytes"] as Int) bytes")
                    print("    \(row["reason"] as String)")
                }
            }
            print("\(total) parked row\(total == 1 ? "" : "s")")
        }
    }
}
