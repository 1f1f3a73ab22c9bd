import ArgumentParser
import Foundation
import Kafka

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "One screen of the shop: brokers, topics, consumer groups with their lag and owners, dead letters, outboxes.",
        discussion: """
        Reads Kafka (watermarks, each group's committed offsets) and every instance's GET /status: those that
        registered under <var-dir>/instances, and any named with --service. The group table has the columns of
        kafka-consumer-groups --describe.
        """)

    @Flag(help: "Redraw every second, like top.")
    var watch = false

    @Flag(help: "Print the snapshot once as JSON.")
    var json = false

    @Option(name: .customLong("service"), help: "An instance's base URL, e.g. http://10.0.0.5:8081; repeatable.")
    var services: [String] = []

    @OptionGroup var kafka: KafkaOptions

    func validate() throws {
        if watch && json { throw ValidationError("--watch and --json do not go together: --json prints once") }
    }

    func run() async throws {
        let observer = try ShopObserver(configuration: try kafka.resolve(), varDirectory: kafka.varDir, extraServices: services)
        do {
            try await show(observer)
        } catch {
            await observer.shutdown()
            throw error
        }
        await observer.shutdown()
    }

    private func show(_ observer: ShopObserver) async throws {
        if json {
            print(try await observer.snapshot().jsonLine)
            return
        }
        repeat {
            let screen = StatusScreen(try await observer.snapshot()).text
            // Home the cursor and clear the screen: it is redrawn in place, like top.
            print(watch ? "\u{1B}[H\u{1B}[2J" + screen : screen, terminator: watch ? "" : "\n")
            if watch { try await Task.sleep(for: .seconds(1)) }
        } while watch
    }
}

/// The snapshot as text: the headline first (total lag, the number that matters most), then brokers and
/// topics, the groups per partition, instances.
struct StatusScreen {
    let snapshot: ShopSnapshot

    init(_ snapshot: ShopSnapshot) { self.snapshot = snapshot }

    var text: String {
        var lines: [String] = []
        let deadLetters = snapshot.deadLetters.values.reduce(0, +)
        lines.append("Emporium  \(snapshot.takenAt)  lag \(snapshot.totalLag)  dead letters \(deadLetters)  instances \(snapshot.instances.filter { $0.status != nil }.count)")
        lines.append("")
        lines.append("BROKERS  " + snapshot.brokers.map { "\($0.id) \($0.host):\($0.port)" }.joined(separator: "   "))
        for gap in snapshot.unanswered { lines.append("NOT ANSWERED  \(gap) (shown as ?)") }
        lines.append("")
        lines.append(textTable(["TOPIC", "PARTITIONS", "MESSAGES", "LOG-START..END PER PARTITION"], snapshot.topics.map { topic in
            [topic.name, "\(topic.partitions.count)", "\(topic.messages)", topic.partitions.map { partition in
                guard let low = partition.low, let high = partition.high else { return "?" }
                return "\(low)..\(high)"
            }.joined(separator: " ")]
        }))
        lines.append("DEAD LETTERS  " + snapshot.deadLetters.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: "   "))
        lines.append("")
        var rows: [[String]] = []
        for group in snapshot.groups {
            for row in group.partitions {
                rows.append([group.group, row.topic, "\(row.partition)", row.committed.map(String.init) ?? "-",
                             row.end.map(String.init) ?? "?", row.lag.map(String.init) ?? "?", row.owner ?? "-"])
            }
        }
        lines.append(textTable(["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID"], rows))
        // LOG RESTARTS: partitions found shorter than the instance's position and read again from their start.
        lines.append(textTable(["INSTANCE", "URL", "PARTITIONS", "LAST BATCH", "OUTBOX", "RELAY", "LOG RESTARTS"], snapshot.instances.map { instance in
            guard let status = instance.status else { return [instance.instance, instance.url, "unreachable", "", "", "", ""] }
            return [status.instance, instance.url, "\(status.partitions.count)", status.lastBatchAt ?? "-", "\(status.outboxDepth)",
                    status.relayLeaseHolder ? "leader (\(status.relayed) sent)" : "standby", "\(status.handled.logRestarts)"]
        }))
        return lines.joined(separator: "\n")
    }
}
