import ArgumentParser
import DomainEvents
import Foundation
import Kafka
import ServiceRuntime

struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Inspect and replay dead letters.",
        subcommands: [List.self, Replay.self]
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
                let source = "\(letter.header(DeadLetter.Header.sourceTopic) ?? "?")[\(letter.header(DeadLetter.Header.sourcePartition) ?? "?")]@\(letter.header(DeadLetter.Header.sourceOffset) ?? "?")"
                print("\(letter.header(DeadLetter.Header.failedAt) ?? "-")  \(source)  key=\(letter.keyString ?? "<none>")  type=\(letter.header(Wire.Header.eventType) ?? "<none>")  group=\(letter.header(DeadLetter.Header.group) ?? "?")")
                print("    \(letter.header(DeadLetter.Header.reason) ?? "no reason given")")
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
            groups dead-lettered it; groups that had processed it skip the copy by its eventId. The replay group
            remembers how far it got, so a second replay sends only letters that arrived since.
            """
        )

        @Argument(help: "The source topic (orders, payments, inventory, notifications) or its .dlq topic.")
        var topic: String

        @OptionGroup var kafka: KafkaOptions

        func run() async throws {
            let configuration = try kafka.resolve()
            let name = try DeadLetterCommand.deadLetterTopic(topic)
            let letters = try await TopicReader(configuration: configuration)
                .readToEnd(name, group: "emporium-dlq-replay")
            var sources = Set<String>()
            let originals = letters.filter { letter in
                sources.insert([DeadLetter.Header.sourceTopic, DeadLetter.Header.sourcePartition, DeadLetter.Header.sourceOffset]
                    .map { letter.header($0) ?? "" }.joined(separator: "/")).inserted
            }.compactMap(DeadLetter.original(of:))
            let producer = try KafkaProducer(configuration: configuration)
            let results = await producer.send(originals)
            await producer.close()
            let failures = results.filter { if case .failure = $0 { true } else { false } }.count
            let sent = originals.count - failures
            print("replayed \(sent) message\(sent == 1 ? "" : "s") from \(letters.count) dead letter\(letters.count == 1 ? "" : "s") in \(name)")
            if failures > 0 { throw ExitCode.failure }
        }
    }
}
