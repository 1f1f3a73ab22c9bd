import DomainEvents
import Foundation
import GRDB
import Kafka
import ServiceRuntime

/// One Kafka concept shown on a real shop.
protocol Experiment: Sendable {
    var name: String { get }
    /// What the experiment shows, in one line.
    var claim: String { get }
    /// Starts what it needs on `lab.shop`, narrates, prints its evidence and returns the verdict the evidence gives.
    func run(_ lab: Lab) async throws -> Verdict
}

enum Verdict {
    case shown(String)
    case notShown(String)

    /// `.shown(shown)` when `holds`, else `.notShown(otherwise)`.
    static func check(_ holds: Bool, shown: String, otherwise: String) -> Verdict {
        holds ? .shown(shown) : .notShown(otherwise)
    }
}

enum Experiments {
    static let all: [any Experiment] = [
        Durability(), Ordering(), LoadBalancing(), Failover(), Offsets(), Replay(), FanOut(), ProducerSettings(),
        DeadLetters(), BrokerFailover(), Backpressure(), ScaleLimit(), ExactlyOnceEffects(), Retention(),
    ]

    static func named(_ name: String) -> (any Experiment)? { all.first { $0.name == name } }
}

/// What an experiment works with: a shop of its own, and a narrator that prints each step as it takes it.
final class Lab: @unchecked Sendable {
    // @unchecked: one experiment at a time drives it, from its own task.
    let shop: LocalShop
    let seed: UInt64
    private let started = ContinuousClock.now

    private init(shop: LocalShop, seed: UInt64) {
        self.shop = shop
        self.seed = seed
    }

    /// Runs one experiment to its verdict and stops what it started; true when the claim was shown.
    static func run(_ experiment: any Experiment, seed: UInt64, binDirectory: String?, keep: Bool) async throws -> Bool {
        let lab = Lab(shop: try LocalShop(binDirectory: binDirectory, label: "experiment-\(experiment.name)"), seed: seed)
        lab.say("▸ \(experiment.name): \(experiment.claim)")
        let verdict: Verdict
        do {
            verdict = try await experiment.run(lab)
        } catch {
            await ChildProcesses.yieldIfInterrupted()
            verdict = .notShown("the experiment could not finish: \(error)")
        }
        lab.step("stopping everything it started")
        await lab.shop.stopAll()
        switch verdict {
        case .shown(let text):
            lab.say("✔ shown: \(text)")
        case .notShown(let text):
            lab.say("✘ not shown: \(text)")
        }
        if case .shown = verdict, !keep {
            lab.shop.removeDirectory()
        } else {
            lab.say("  logs, databases and mail are in \(lab.shop.varDirectory.path)")
        }
        lab.say("")
        if case .shown = verdict { return true }
        return false
    }

    // MARK: Narration

    /// Written straight to the file descriptor, so that a pipe shows each line as it happens.
    func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// One line per step, with the seconds since the experiment began.
    func step(_ text: String) {
        say(String(format: "  %5.1f s  ", (ContinuousClock.now - started).seconds) + text)
    }

    /// The evidence as a small table, indented under the steps.
    func evidence(_ header: [String], _ rows: [[String]]) {
        say("")
        for line in textTable(header, rows).split(separator: "\n") { say("    " + line) }
        say("")
    }

    // MARK: Driving the shop

    /// Starts the cluster and the four services, `counts` instances of some, and says so.
    func startShop(_ counts: [String: Int] = [:]) async throws {
        let spelled = [2: "two", 3: "three"]
        let extra = counts.sorted { $0.key < $1.key }.map { "\(spelled[$0.value] ?? String($0.value)) \($0.key) instances" }
        step(extra.isEmpty ? "starting the cluster and the four services"
             : "starting the cluster, \(extra.joined(separator: ", ")) and one of each other service")
        try await shop.start(counts: counts)
    }

    /// Places `orders` orders (the experiment's seed plus `seedOffset`) and waits until the shop is at rest.
    @discardableResult
    func place(_ orders: Int, seedOffset: UInt64 = 0, _ circumstance: String = "") async throws -> Summary {
        step("placing \(orders) orders" + (circumstance.isEmpty ? "" : " " + circumstance))
        let summary = try await shop.generate(orders: orders, seed: seed + seedOffset)
        try await shop.waitUntilAtRest()
        return summary
    }

    // MARK: Reading the shop

    func kafka() throws -> KafkaConfiguration { try shop.kafkaConfiguration() }

    func snapshot() async throws -> ShopSnapshot {
        let observer = try ShopObserver(configuration: try kafka(), varDirectory: shop.varDirectory.path, extraServices: [])
        defer { Task { await observer.shutdown() } }
        return try await observer.snapshot()
    }

    /// The consumer group of `service` as the cluster and its members see it now.
    func group(of service: String) async throws -> ShopSnapshot.GroupState {
        guard let group = try await snapshot().groups.first(where: { $0.group == service }) else {
            throw CommandFailure("no group \(service) in the snapshot")
        }
        return group
    }

    /// Messages in every partition of `topic` now.
    func messages(in topic: Topic) async throws -> Int64 {
        try await KafkaAdmin(configuration: try kafka()).offsets(of: [topic.name]).reduce(0) { $0 + $1.high - $1.low }
    }

    /// Orders per status (pending, confirmed, cancelled) in order-service's database.
    func ordersByStatus() async throws -> [String: Int] {
        try await AuditCommand.column("SELECT status, count(*) FROM customerOrder GROUP BY status",
                                      in: try AuditCommand.open(shop.databasePath(of: "order-service")))
    }

    /// Every message of `topic` from the beginning, read by a consumer group made for the purpose.
    func read(_ topic: String) async throws -> [ConsumedMessage] {
        try await TopicReader(configuration: try kafka()).readToEnd(topic, group: "emporium-experiment-\(UUID().uuidString.prefix(8))")
    }

    /// Waits until the running instances of `service` own each partition of its topics exactly once, the same
    /// way twice in a row a second apart, and returns who owns what.
    func settledAssignment(of service: String, seconds: Double = 60) async throws -> [String: [TopicPartition]] {
        let partitions = try await KafkaAdmin(configuration: try kafka()).partitionCounts(of: ShopLayout.consumed[service]!.map(\.name))
            .values.reduce(0) { $0 + Int($1) }
        var last: [String: [TopicPartition]] = [:]
        var stableSince: ContinuousClock.Instant?
        try await shop.waitFor("\(service)'s partitions settled", seconds: seconds) { [self] in
            var owned: [String: [TopicPartition]] = [:]
            for instance in shop.instances where instance.service == service {
                guard let status = await shop.status(of: instance) else { return false }
                owned[instance.name] = status.partitions.map { TopicPartition($0.topic, $0.partition) }.sorted()
            }
            let all = owned.values.flatMap { $0 }
            guard all.count == partitions, Set(all).count == partitions else {
                stableSince = nil
                return false
            }
            if owned != last {
                last = owned
                stableSince = .now
                return false
            }
            return ContinuousClock.now - stableSince! >= .seconds(1)
        }
        return last
    }

    /// What the running instances of `service` have done since they started, by instance.
    func handled(by service: String) async -> [String: HandledCounts] {
        var counts: [String: HandledCounts] = [:]
        for instance in shop.instances where instance.service == service {
            counts[instance.name] = await shop.status(of: instance)?.handled
        }
        return counts
    }
}

extension [TopicPartition] {
    /// "orders 0 3 7" for a list of one topic's partitions.
    var partitionList: String {
        isEmpty ? "none" : Dictionary(grouping: self, by: \.topic).sorted { $0.key < $1.key }
            .map { topic, partitions in "\(topic) " + partitions.map { String($0.partition) }.joined(separator: " ") }.joined(separator: "; ")
    }
}
