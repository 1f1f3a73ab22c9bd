import ArgumentParser
import Catalogue
import Foundation
import Kafka
import Logging

struct KafkaBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "Produce and consume realistic events through Emporium's Kafka layer and through kcat, side by side.",
        discussion: """
        Without --bootstrap-servers it starts its own embedded cluster as a separate `emporium cluster` process,
        so both clients meet the same brokers and neither shares a process with them.
        Targets: produce and consume at ≥ 0.9× kcat's rate.
        """
    )

    @Option(help: "Events to produce and then consume, per client.")
    var messages: Int = 200_000

    @Option(help: "Rounds; each client's median rate is reported, since one round on 2 cores is noisy.")
    var rounds: Int = 3

    @Option(help: "Distinct keys (customer IDs).")
    var keys: Int = 5_000

    @Option(help: "Partitions of each benchmark topic.")
    var partitions: Int32 = 12

    @Option(help: "Brokers of the embedded cluster.")
    var brokers: Int32 = 3

    @Option(help: "Seed for the generated events.")
    var seed: UInt64 = 42

    @Option(help: "A real cluster to measure against instead of an embedded one.")
    var bootstrapServers: String?

    @Flag(help: "Print the figures as one JSON object.")
    var json = false

    func validate() throws {
        guard messages > 0, keys > 0, partitions > 0, rounds > 0 else {
            throw ValidationError("--messages, --keys, --partitions and --rounds must be positive")
        }
    }

    func run() async throws {
        let logger = Logger(label: "emporium.bench")
        let kcat = try Kcat.locate()
        let run = UUID().uuidString.prefix(8).lowercased()
        let replication = min(3, brokers)
        let topics = (1...rounds).flatMap { round in
            ["emporium", "kcat"].map { TopicSpec(name: "bench-\($0)-\(run)-\(round)", partitions: partitions, replicationFactor: replication) }
        }
        let cluster = bootstrapServers == nil
            ? try await ClusterProcess.start(brokers: brokers, partitions: partitions, topics: topics.map(\.name))
            : nil
        defer { cluster?.stop() }
        let servers = bootstrapServers ?? cluster!.bootstrapServers
        let configuration = KafkaConfiguration(bootstrapServers: servers)
            .merging(cluster == nil ? [:] : KafkaConfiguration.embeddedClusterTuning)
        if cluster == nil {
            try await KafkaAdmin(configuration: configuration).createTopics(topics)
        }

        var generator = BenchEvents(keys: keys, seed: seed)
        let events = (0..<messages).map { _ in generator.next() }
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-bench-\(run).tsv")
        try generator.writeKcatInput(events, to: input)
        defer { try? FileManager.default.removeItem(at: input) }
        let averageBytes = events.map(\.value.count).reduce(0, +) / messages
        logger.info("benchmarking \(messages) events of ~\(averageBytes) bytes over \(keys) keys, \(rounds) rounds")

        var seconds = PhaseTimes()
        for round in 1...rounds {
            let ours = "bench-emporium-\(run)-\(round)"
            let theirs = "bench-kcat-\(run)-\(round)"
            let batch = events.map { event in
                var event = event
                event.topic = ours
                return event
            }
            seconds.ourProduce.append(try await secondsTaken { try await produce(batch, configuration: configuration) })
            seconds.kcatProduce.append(try secondsTaken { try kcat.produce(file: input, topic: theirs, servers: servers) })
            seconds.ourConsume.append(try await secondsTaken { try await consume(count: messages, topic: ours, group: ours, configuration: configuration) })
            seconds.kcatConsume.append(try secondsTaken { try kcat.consume(count: messages, topic: theirs, group: theirs, servers: servers) })
        }

        let rate = { (times: [Double]) in Double(messages) / times.sorted()[times.count / 2] }
        let report = KafkaBenchReport(
            messages: messages, averageBytes: averageBytes, rounds: rounds,
            produce: Comparison(emporium: rate(seconds.ourProduce), kcat: rate(seconds.kcatProduce)),
            consume: Comparison(emporium: rate(seconds.ourConsume), kcat: rate(seconds.kcatConsume))
        )
        print(json ? report.jsonLine : report.table)
    }

    private func produce(_ events: [OutgoingMessage], configuration: KafkaConfiguration) async throws {
        let producer = try KafkaProducer(configuration: configuration)
        for result in await producer.send(events) { _ = try result.get() }
        await producer.close()
    }

    private func consume(count: Int, topic: String, group: String, configuration: KafkaConfiguration) async throws {
        let consumer = try KafkaConsumer(
            configuration: configuration, group: group, topics: [topic], batching: ConsumerBatching(maxMessages: 2_000))
        var seen = 0
        for try await batch in consumer.batches {
            seen += batch.messages.count
            try await consumer.commit(batch)
            if seen >= count { break }
        }
        await consumer.close()
    }
}

extension KafkaConfiguration {
    func merging(_ extra: [String: String]) -> KafkaConfiguration {
        KafkaConfiguration(properties.merging(extra) { current, _ in current })
    }
}

struct Comparison: Codable {
    let emporium: Double
    let kcat: Double
    var ratio: Double { emporium / kcat }

    enum CodingKeys: String, CodingKey { case emporium, kcat, ratio }

    init(emporium: Double, kcat: Double) {
        self.emporium = emporium
        self.kcat = kcat
    }

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        emporium = try container.decode(Double.self, forKey: .emporium)
        kcat = try container.decode(Double.self, forKey: .kcat)
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(emporium.rounded(), forKey: .emporium)
        try container.encode(kcat.rounded(), forKey: .kcat)
        try container.encode((ratio * 1000).rounded() / 1000, forKey: .ratio)
    }
}

/// Seconds per round, per client and phase.
struct PhaseTimes {
    var ourProduce: [Double] = []
    var kcatProduce: [Double] = []
    var ourConsume: [Double] = []
    var kcatConsume: [Double] = []
}

struct KafkaBenchReport: Encodable {
    let messages: Int
    let averageBytes: Int
    let rounds: Int
    let produce: Comparison
    let consume: Comparison

    var table: String {
        func row(_ name: String, _ comparison: Comparison) -> String {
            name.padding(toLength: 10, withPad: " ", startingAt: 0)
                + String(format: "%14.0f %14.0f %9.2f×", comparison.emporium, comparison.kcat, comparison.ratio)
        }
        return """
        \(messages) events, ~\(averageBytes) bytes each, median of \(rounds) rounds (msgs/s; target ≥ 0.90×)
                        emporium           kcat     ratio
        \(row("produce", produce))
        \(row("consume", consume))
        """
    }
}

/// Realistic order events: JSON envelopes of about 400 bytes, keyed by customer ID.
struct BenchEvents {
    private var random: SeededRandom
    private let keys: Int
    private var sequence = 0

    init(keys: Int, seed: UInt64) {
        self.keys = keys
        random = SeededRandom(seed: seed)
    }

    mutating func next() -> OutgoingMessage {
        sequence += 1
        let customer = "customer-\(random.next() % UInt64(keys))"
        let product = "product-\(random.next() % 200)"
        let quantity = 1 + random.next() % 5
        let price = 100 + random.next() % 9_900
        let value = """
        {"eventId":"\(uuid())","type":"OrderPlaced","version":1,"key":"\(customer)","sequence":\(sequence),\
        "correlationId":"order-\(sequence)","causationId":null,"occurredAt":"2026-11-23T10:00:00.000Z",\
        "source":"order-service","data":{"orderId":"order-\(sequence)","customerId":"\(customer)",\
        "lines":[{"productId":"\(product)","quantity":\(quantity),"unitPriceCents":\(price)}],\
        "totalCents":\(quantity * price),"currency":"EUR"}}
        """
        return OutgoingMessage(topic: "", key: customer, value: Array(value.utf8), headers: [
            KafkaHeader("event-type", "OrderPlaced"), KafkaHeader("event-version", "1"),
        ])
    }

    private mutating func uuid() -> String {
        let high = random.next(), low = random.next()
        let hex = String(format: "%016llx%016llx", high, low)
        let characters = Array(hex)
        return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(characters[$0]) }.joined(separator: "-")
    }

    /// kcat's input: one `key<TAB>value` line per event (the values hold no tabs or newlines).
    func writeKcatInput(_ events: [OutgoingMessage], to url: URL) throws {
        var data = Data()
        for event in events {
            data.append(contentsOf: event.key ?? [])
            data.append(0x09)
            data.append(contentsOf: event.value)
            data.append(0x0a)
        }
        try data.write(to: url)
    }
}

/// An `emporium cluster` child process on a private runtime directory.
struct ClusterProcess {
    let process: Process
    let bootstrapServers: String
    let directory: URL

    /// Starts the cluster; returns once its topics exist.
    static func start(brokers: Int32, partitions: Int32, topics: [String]) async throws -> ClusterProcess {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-cluster-\(UUID().uuidString)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        process.arguments = ["cluster", "--brokers", "\(brokers)", "--partitions", "\(partitions)",
                             "--replication-factor", "\(min(3, brokers))", "--var-dir", directory.path, "--topics"] + topics
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        // The cluster prints its bootstrap servers once its topics exist.
        let line = try await offloadedLine(from: output.fileHandleForReading)
        guard let servers = line, !servers.isEmpty else {
            process.terminate()
            throw ValidationError("the embedded cluster did not start (see its log above)")
        }
        return ClusterProcess(process: process, bootstrapServers: servers, directory: directory)
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Reads the first line a child prints, on a spare thread.
private func offloadedLine(from handle: FileHandle) async throws -> String? {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            var bytes: [UInt8] = []
            while true {
                let chunk = handle.readData(ofLength: 1)
                guard let byte = chunk.first else { break }
                if byte == 0x0a { break }
                bytes.append(byte)
            }
            continuation.resume(returning: bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self))
        }
    }
}

/// The kcat baseline, run as a separate process with the same producer settings as Emporium's.
struct Kcat {
    let path: String

    static func locate() throws -> Kcat {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let candidate = "\(directory)/kcat"
            if FileManager.default.isExecutableFile(atPath: candidate) { return Kcat(path: candidate) }
        }
        throw ValidationError("kcat is not on PATH: install it (apt-get install kcat) to run the baseline")
    }

    func produce(file: URL, topic: String, servers: String) throws {
        try run(["-P", "-b", servers, "-t", topic, "-K", "\t", "-l", "-z", "lz4",
                 "-H", "event-type=OrderPlaced", "-H", "event-version=1",
                 "-X", "enable.idempotence=true", "-X", "acks=all", "-X", "partitioner=murmur2_random", "-X", "linger.ms=5",
                 file.path])
    }

    func consume(count: Int, topic: String, group: String, servers: String) throws {
        try run(["-C", "-b", servers, "-G", group, "-c", String(count), "-q", "-f", "%k %s\n",
                 "-X", "auto.offset.reset=earliest", "-X", "fetch.wait.max.ms=5", topic])
    }

    private func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("kcat \(arguments.prefix(1).joined()) exited with status \(process.terminationStatus)")
        }
    }
}
