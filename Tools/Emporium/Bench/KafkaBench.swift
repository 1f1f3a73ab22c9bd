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
    var rounds: Int = 5

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

    /// Both consumers may prefetch a whole run. At librdkafka's defaults (100k messages or 64 MB) a partition
    /// whose prefetch is full stops fetching until a periodic check, and a run of 200k messages then measures
    /// when that check fell (one run of the same client went from 180k to 740k msgs/s), not the client.
    static let prefetch = ["queued.min.messages": "10000000", "queued.max.messages.kbytes": "2097151"]

    func validate() throws {
        guard messages > 0, keys > 0, partitions > 0, rounds > 0 else {
            throw ValidationError("--messages, --keys, --partitions and --rounds must be positive")
        }
    }

    func run() async throws {
        let report = try await measure()
        // After the cluster it started has stopped, so that the figures are the last thing printed.
        print(json ? report.jsonLine : report.table)
    }

    private func measure() async throws -> KafkaBenchReport {
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
            .merging(Dictionary(uniqueKeysWithValues: Self.prefetch.map { ("consumer." + $0.key, $0.value) }))
            .merging(cluster == nil ? [:] : KafkaConfiguration.embeddedClusterTuning)
        if cluster == nil {
            try await KafkaAdmin(configuration: configuration).createTopics(topics)
        }

        var generator = BenchEvents(keys: keys, seed: seed)
        let events = (0..<messages).map { _ in generator.next() }
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-bench-\(run).tsv")
        let oneEventInput = FileManager.default.temporaryDirectory.appendingPathComponent("emporium-bench-\(run)-one.tsv")
        try generator.writeKcatInput(events, to: input)
        try generator.writeKcatInput(Array(events.prefix(1)), to: oneEventInput)
        defer {
            try? FileManager.default.removeItem(at: input)
            try? FileManager.default.removeItem(at: oneEventInput)
        }
        let averageBytes = events.map(\.value.count).reduce(0, +) / messages
        logger.info("benchmarking \(messages) events of ~\(averageBytes) bytes over \(keys) keys, \(rounds) rounds")

        var rates = PhaseRates()
        for round in 1...rounds {
            let ours = "bench-emporium-\(run)-\(round)"
            let theirs = "bench-kcat-\(run)-\(round)"
            let batch = events.map { event in
                var event = event
                event.topic = ours
                return event
            }
            // A client's start (metadata, producer ID) is a fixed cost: a one-message run beside each full one takes it out.
            let ourStart = try await secondsTaken { try await produce(Array(batch.prefix(1)), configuration: configuration) }
            let ourWhole = try await secondsTaken { try await produce(batch, configuration: configuration) }
            rates.ourProduce.append(PhaseRate(messages: messages, whole: ourWhole, start: ourStart))
            // Both consumers wait for every message: one the log already dropped would keep them waiting for ever.
            let dropped = try await KafkaAdmin(configuration: configuration).offsets(of: [ours]).filter { $0.low > 0 }
            if !dropped.isEmpty {
                throw ValidationError("""
                    \(messages) events do not fit: \(dropped.count) of \(partitions) partitions already dropped their oldest \
                    messages (the embedded cluster keeps 5 MB per partition). Use fewer --messages or more --partitions.
                    """)
            }
            let kcatStart = try secondsTaken { try kcat.produce(file: oneEventInput, topic: theirs, servers: servers) }
            let kcatWhole = try secondsTaken { try kcat.produce(file: input, topic: theirs, servers: servers) }
            rates.kcatProduce.append(PhaseRate(messages: messages, whole: kcatWhole, start: kcatStart))
            rates.ourConsume.append(try await consume(count: messages + 1, topic: ours, group: ours, configuration: configuration))
            rates.kcatConsume.append(try await kcat.consume(count: messages + 1, topic: theirs, group: theirs, servers: servers))
        }

        return KafkaBenchReport(
            messages: messages, averageBytes: averageBytes, rounds: rounds,
            produce: Comparison(emporium: rates.ourProduce.median(\.steady), kcat: rates.kcatProduce.median(\.steady)),
            consume: Comparison(emporium: rates.ourConsume.median(\.steady), kcat: rates.kcatConsume.median(\.steady)),
            produceWhole: Comparison(emporium: rates.ourProduce.median(\.whole), kcat: rates.kcatProduce.median(\.whole)),
            consumeWhole: Comparison(emporium: rates.ourConsume.median(\.whole), kcat: rates.kcatConsume.median(\.whole))
        )
    }

    private func produce(_ events: [OutgoingMessage], configuration: KafkaConfiguration) async throws {
        let producer = try KafkaProducer(configuration: configuration)
        for result in await producer.send(events) { _ = try result.get() }
        await producer.close()
    }

    /// Consumes `count` messages as a new group member; steady state runs from the first batch to the last.
    private func consume(count: Int, topic: String, group: String, configuration: KafkaConfiguration) async throws -> PhaseRate {
        let started = ContinuousClock.now
        // Each round's join and leave are routine here, not news between the figures.
        var logger = Logger(label: "emporium.bench.consumer")
        logger.logLevel = .warning
        let consumer = try KafkaConsumer(
            configuration: configuration, group: group, topics: [topic], batching: ConsumerBatching(maxMessages: 2_000), logger: logger)
        var reading = SteadyReading()
        for try await batch in consumer.batches {
            reading.received(batch.messages.count)
            try await consumer.commit(batch)
            if reading.total >= count { break }
        }
        await consumer.close()
        return reading.rate(since: started)
    }
}

/// Arrivals of a consumer's reads: its first read waited for the group join, the rest is steady state.
struct SteadyReading {
    private(set) var total = 0
    private var first: (at: ContinuousClock.Instant, count: Int)?
    private var last = ContinuousClock.now

    mutating func received(_ count: Int) {
        let now = ContinuousClock.now
        if first == nil { first = (now, count) }
        total += count
        last = now
    }

    func rate(since started: ContinuousClock.Instant) -> PhaseRate {
        let whole = (last - started).seconds
        guard let first, last > first.at else { return PhaseRate(rate: Double(total) / whole, whole: Double(total) / whole) }
        return PhaseRate(rate: Double(total - first.count) / (last - first.at).seconds, whole: Double(total) / whole)
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

/// One client's rate in one round: in steady state, and over the whole run including its start.
struct PhaseRate {
    let steady: Double
    let whole: Double

    init(rate steady: Double, whole: Double) {
        self.steady = steady
        self.whole = whole
    }

    /// From a full run and a one-message run: the difference is what the other messages took.
    init(messages: Int, whole: Double, start: Double) {
        self.init(rate: Double(messages - 1) / max(whole - start, 1e-6), whole: Double(messages) / whole)
    }
}

/// Rates per round, per client and phase.
struct PhaseRates {
    var ourProduce: [PhaseRate] = []
    var kcatProduce: [PhaseRate] = []
    var ourConsume: [PhaseRate] = []
    var kcatConsume: [PhaseRate] = []
}

extension [PhaseRate] {
    func median(_ figure: KeyPath<PhaseRate, Double>) -> Double {
        map { $0[keyPath: figure] }.median
    }
}

struct KafkaBenchReport: Encodable {
    let messages: Int
    let averageBytes: Int
    let rounds: Int
    /// Steady state: what the targets compare.
    let produce: Comparison
    let consume: Comparison
    /// Whole runs, the client's start and the consumer group's join included.
    let produceWhole: Comparison
    let consumeWhole: Comparison

    var table: String {
        func row(_ name: String, _ comparison: Comparison) -> String {
            name.padding(toLength: 30, withPad: " ", startingAt: 0)
                + String(format: "%12.0f %12.0f %9.2f×", comparison.emporium, comparison.kcat, comparison.ratio)
        }
        return """
        \(messages) events, ~\(averageBytes) bytes each, median of \(rounds) rounds (msgs/s; target ≥ 0.90× in steady state)
                                          emporium         kcat     ratio
        \(row("produce, steady state", produce))
        \(row("consume, steady state", consume))
        \(row("produce, whole run", produceWhole))
        \(row("consume, whole run (with join)", consumeWhole))
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

    /// Consumes `count` messages as a new group member, timing each read of its output as it arrives.
    func consume(count: Int, topic: String, group: String, servers: String) async throws -> PhaseRate {
        let started = ContinuousClock.now
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-C", "-b", servers, "-G", group, "-c", String(count), "-q", "-f", "%k %s\n",
                             "-X", "auto.offset.reset=earliest", "-X", "fetch.wait.max.ms=5"]
            + KafkaBench.prefetch.flatMap { ["-X", "\($0.key)=\($0.value)"] } + [topic]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let reading = await Self.countLines(from: output.fileHandleForReading)
        process.waitUntilExit()
        guard process.terminationStatus == 0, reading.total >= count else {
            throw ValidationError("kcat -C exited with status \(process.terminationStatus) after \(reading.total) of \(count) messages")
        }
        return reading.rate(since: started)
    }

    /// Counts output lines (one per message) on a spare thread until the end, noting when each read arrived.
    private static func countLines(from handle: FileHandle) async -> SteadyReading {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var reading = SteadyReading()
                var buffer = [UInt8](repeating: 0, count: 1 << 20)
                let descriptor = handle.fileDescriptor
                while true {
                    let read = buffer.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress, $0.count) }
                    guard read > 0 else { break }
                    // memchr, not a loop over bytes here: this thread shares the cores with the kcat it measures.
                    let lines = buffer.withUnsafeBytes { bytes in
                        var count = 0
                        var position = bytes.baseAddress!
                        let end = position + read
                        while let found = memchr(position, 0x0a, end - position) {
                            count += 1
                            position = UnsafeRawPointer(found) + 1
                        }
                        return count
                    }
                    if lines > 0 { reading.received(lines) }
                }
                continuation.resume(returning: reading)
            }
        }
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
