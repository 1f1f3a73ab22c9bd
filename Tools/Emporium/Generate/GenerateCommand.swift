import ArgumentParser
import AsyncHTTPClient
import DomainEvents
import Foundation
import Kafka
import NIOCore
import ServiceRuntime
import Synchronization

struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Place synthetic orders over HTTP and watch each one reach its outcome on the orders topic.",
        discussion: """
        Customers and products are drawn with a Zipf skew (0 is uniform). With --rate, orders are placed open
        loop at that many per second; otherwise --concurrency clients place them back to back. At the end it
        prints placed, confirmed, cancelled by reason, requests that failed for good and requests retried,
        orders/s and placed-to-terminal latency. Exits 2 if orders are still pending at --timeout, 3 if any
        request failed for good.
        """)

    @Option(help: "Orders to place.")
    var orders: Int = 1_000

    @Option(help: "Orders per second, open loop (default: closed loop at --concurrency).")
    var rate: Double?

    @Option(help: "Concurrent clients in closed loop.")
    var concurrency: Int = 32

    @Option(help: "Distinct customers.")
    var customers: Int = 100

    @Option(help: "Distinct products (product-1 … product-N of the catalogue).")
    var products: Int = 200

    @Option(help: "Zipf exponent over customers and products; 0 draws uniformly.")
    var skew: Double = 1.0

    @Option(help: "Seed: the same seed places the same orders.")
    var seed: UInt64 = 1

    @Option(help: "order-service's base URL.")
    var url: String = "http://127.0.0.1:8080"

    @Option(help: "Seconds to wait for every order to reach its outcome.")
    var timeout: Double = 300

    @Option(help: "Times a request that failed on the way (connection, timeout, 5xx) is sent again, with the same Idempotency-Key.")
    var retries: Int = 8

    @Flag(help: "Print the summary as JSON.")
    var json = false

    @Option(help: ArgumentHelp(
        "Also write each order to this CSV file: its ID, when it was placed and when it ended (Unix milliseconds), and its outcome.",
        discussion: "For lining orders up against something that happened meanwhile, such as a broker taken down.",
        valueName: "path"))
    var record: String?

    @OptionGroup var kafka: KafkaOptions

    func validate() throws {
        guard orders > 0 else { throw ValidationError("--orders must be positive") }
        guard customers > 0, products > 0 else { throw ValidationError("--customers and --products must be positive") }
        guard (1...Catalogue.defaultSize).contains(products) else {
            throw ValidationError("--products must be between 1 and \(Catalogue.defaultSize), the catalogue's size")
        }
        guard concurrency > 0 else { throw ValidationError("--concurrency must be positive") }
        guard retries >= 0 else { throw ValidationError("--retries must be 0 or more") }
        guard rate.map({ $0 > 0 }) ?? true else { throw ValidationError("--rate must be positive") }
        guard skew >= 0 else { throw ValidationError("--skew must be 0 or more") }
        guard URL(string: url)?.host != nil else { throw ValidationError("--url must be an http URL, like http://127.0.0.1:8080") }
    }

    func run() async throws {
        let watcher = try await OutcomeWatcher.start(configuration: try kafka.resolve())
        var plan = OrderPlan(customers: customers, products: products, skew: skew, seed: seed)
        let bodies = (0..<orders).map { _ in plan.next() }
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
            connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)))
        let ledger = PlacementLedger()
        let progress = Progress(total: orders, ledger: ledger, watcher: watcher)
        let start = ContinuousClock.now
        let placing = Task {
            if let rate {
                try await placeOpenLoop(bodies, rate: rate, client: client, ledger: ledger)
            } else {
                try await placeClosedLoop(bodies, client: client, ledger: ledger)
            }
        }
        let ticker = Task { await progress.run() }
        try await placing.value
        let placedIn = ContinuousClock.now - start
        let deadline = ContinuousClock.now + .seconds(timeout)
        while watcher.outcomes(of: ledger.placedIDs).count < ledger.placedCount, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        ticker.cancel()
        progress.finish()
        try await client.shutdown()
        await watcher.stop()

        let summary = Summary(ledger: ledger, watcher: watcher, placedIn: placedIn)
        if let record {
            try OrderRecord.csv(ledger: ledger, watcher: watcher, wallClockAt: (Date(), ContinuousClock.now))
                .write(toFile: record, atomically: true, encoding: .utf8)
        }
        print(json ? summary.jsonLine : summary.table)
        if summary.pending > 0 { throw ExitCode(2) }
        if summary.httpErrors > 0 { throw ExitCode(3) }
    }

    private func placeClosedLoop(_ bodies: [Data], client: HTTPClient, ledger: PlacementLedger) async throws {
        let tickets = Tickets()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<min(concurrency, bodies.count) {
                group.addTask {
                    while true {
                        let index = tickets.take()
                        guard index < bodies.count else { return }
                        await place(bodies[index], client: client, ledger: ledger)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// HTTP/1.1 connections to order-service: one request at a time each.
    private var connections: Int { max(concurrency, 64) }

    /// Sends each order at its time, without waiting for earlier answers, but with at most a few requests per
    /// connection outstanding: when the shop (or this process) answers slower than the rate, placements fall
    /// behind and `placedPerSecond` says so. Unbounded, thousands of requests queued in the HTTP client, whose
    /// queue is scanned on every timeout: a debug build offering 500 orders/s then spent its whole core on that
    /// scan, its connections timed out, and the retries fed the queue.
    private func placeOpenLoop(_ bodies: [Data], rate: Double, client: HTTPClient, ledger: PlacementLedger) async throws {
        let start = ContinuousClock.now
        let outstandingLimit = 4 * connections
        try await withThrowingTaskGroup(of: Void.self) { group in
            var outstanding = 0
            for (index, body) in bodies.enumerated() {
                try await Task.sleep(until: start + .seconds(Double(index) / rate), clock: .continuous)
                if outstanding == outstandingLimit {
                    try await group.next()
                    outstanding -= 1
                }
                group.addTask { await place(body, client: client, ledger: ledger) }
                outstanding += 1
            }
            try await group.waitForAll()
        }
    }

    /// Places one order as a careful client does: a request that fails on the way (no connection, a timeout, a
    /// 5xx) is sent again with the same Idempotency-Key, so that it places the order at most once; a 4xx is final.
    private func place(_ body: Data, client: HTTPClient, ledger: PlacementLedger) async {
        var request = HTTPClientRequest(url: url + "/orders")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: UUID().uuidString)
        request.body = .bytes(ByteBuffer(bytes: body))
        var attempt = 0
        while true {
            attempt += 1
            let failure: String
            do {
                let response = try await client.execute(request, timeout: .seconds(30))
                let bytes = try await response.body.collect(upTo: 1 << 20)
                if response.status == .accepted, let placed = try? JSONDecoder().decode(PlacedOrder.self, from: Data(bytes.readableBytesView)) {
                    ledger.recordPlaced(placed.orderId, at: .now)
                    return
                }
                failure = "HTTP \(response.status.code)"
                guard response.status.code >= 500 else { break }
            } catch {
                failure = "\(error)"
            }
            guard attempt <= retries else {
                ledger.recordError(failure)
                return
            }
            ledger.recordRetry()
            try? await Task.sleep(for: .milliseconds(100) * (1 << min(attempt - 1, 5)))
        }
        ledger.recordError("HTTP 4xx")
    }

    struct PlacedOrder: Decodable {
        let orderId: String
    }
}

import Catalogue

/// Draws orders: a Zipf-skewed customer, one to three distinct Zipf-skewed products, quantities 1 to 3.
struct OrderPlan {
    private var random: SeededRandom
    private let customers: ZipfSampler
    private let products: ZipfSampler

    init(customers: Int, products: Int, skew: Double, seed: UInt64) {
        random = SeededRandom(seed: seed)
        self.customers = ZipfSampler(count: customers, exponent: skew)
        self.products = ZipfSampler(count: products, exponent: skew)
    }

    mutating func next() -> Data {
        let customer = "customer-\(customers.sample(&random))"
        var chosen: [Int] = []
        let lineCount = 1 + Int(random.next() % 3)
        while chosen.count < lineCount {
            let product = products.sample(&random)
            if !chosen.contains(product) { chosen.append(product) }
            if chosen.count >= products.count { break }
        }
        let lines = chosen.map { "{\"productId\":\"product-\($0)\",\"quantity\":\(1 + random.next() % 3)}" }
        return Data("{\"customerId\":\"\(customer)\",\"lines\":[\(lines.joined(separator: ","))]}".utf8)
    }
}

/// Samples 1…count with probability proportional to 1/k^exponent.
struct ZipfSampler {
    let count: Int
    private let cumulative: [Double]

    init(count: Int, exponent: Double) {
        self.count = count
        var total = 0.0
        cumulative = (1...count).map { rank in
            total += 1 / pow(Double(rank), exponent)
            return total
        }
    }

    func sample(_ random: inout SeededRandom) -> Int {
        let target = Double(random.next() >> 11) / Double(1 << 53) * cumulative.last!
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] < target { low = middle + 1 } else { high = middle }
        }
        return low + 1
    }
}

/// Hands out order indexes to closed-loop clients, each once.
final class Tickets: Sendable {
    private let next = Atomic<Int>(0)

    func take() -> Int { next.add(1, ordering: .relaxed).oldValue }
}

/// What the generator placed, and when.
final class PlacementLedger: Sendable {
    private struct State {
        var placed: [String: ContinuousClock.Instant] = [:]
        var errors: [String: Int] = [:]
        var retries = 0
    }

    private let state = Mutex(State())

    func recordPlaced(_ orderId: String, at instant: ContinuousClock.Instant) {
        state.withLock { $0.placed[orderId] = instant }
    }

    func recordError(_ description: String) {
        state.withLock { $0.errors[description, default: 0] += 1 }
    }

    func recordRetry() {
        state.withLock { $0.retries += 1 }
    }

    var retries: Int { state.withLock { $0.retries } }

    var placedCount: Int { state.withLock { $0.placed.count } }
    var placedIDs: Set<String> { state.withLock { Set($0.placed.keys) } }
    var placed: [String: ContinuousClock.Instant] { state.withLock { $0.placed } }
    var errors: [String: Int] { state.withLock { $0.errors } }
}

/// Reads the `orders` topic and notes when each order's terminal event arrived.
final class OutcomeWatcher: Sendable {
    struct Outcome: Sendable {
        let confirmed: Bool
        let reason: CancellationReason?
        let seenAt: ContinuousClock.Instant
    }

    private let consumer: KafkaConsumer
    private let outcomes = Mutex<[String: Outcome]>([:])
    private let task = Mutex<Task<Void, Error>?>(nil)

    private init(consumer: KafkaConsumer) {
        self.consumer = consumer
    }

    /// Joins a fresh group on `orders` and returns once it has its partitions.
    static func start(configuration: KafkaConfiguration) async throws -> OutcomeWatcher {
        let consumer = try KafkaConsumer(
            configuration: configuration, group: "emporium-generate-\(UUID().uuidString.prefix(8))",
            topics: [Topic.orders.name], batching: ConsumerBatching(maxMessages: 2_000))
        let watcher = OutcomeWatcher(consumer: consumer)
        watcher.task.withLock { $0 = Task { try await watcher.watch() } }
        for await event in consumer.events {
            if case .assigned(let partitions) = event, !partitions.isEmpty { break }
        }
        return watcher
    }

    private func watch() async throws {
        for try await batch in consumer.batches {
            let now = ContinuousClock.now
            var seen: [(String, Outcome)] = []
            for message in batch.messages {
                guard let type = message.header(Wire.Header.eventType),
                      type == EventType.orderConfirmed.rawValue || type == EventType.orderCancelled.rawValue,
                      let envelope = try? Wire.decode(message) else { continue }
                switch envelope.event {
                case .orderConfirmed(let order): seen.append((order.orderId, Outcome(confirmed: true, reason: nil, seenAt: now)))
                case .orderCancelled(let order): seen.append((order.orderId, Outcome(confirmed: false, reason: order.reason, seenAt: now)))
                default: break
                }
            }
            outcomes.withLock { outcomes in for (id, outcome) in seen where outcomes[id] == nil { outcomes[id] = outcome } }
            try await consumer.commit(batch)
        }
    }

    func outcomes(of ids: Set<String>) -> [String: Outcome] {
        outcomes.withLock { $0.filter { ids.contains($0.key) } }
    }

    func stop() async {
        await consumer.close()
        _ = try? await task.withLock { $0 }?.value
    }
}

/// A one-line progress bar on a terminal; nothing when the output is a file or a pipe.
final class Progress: Sendable {
    let total: Int
    let ledger: PlacementLedger
    let watcher: OutcomeWatcher
    private let enabled = isatty(STDERR_FILENO) == 1

    init(total: Int, ledger: PlacementLedger, watcher: OutcomeWatcher) {
        self.total = total
        self.ledger = ledger
        self.watcher = watcher
    }

    func run() async {
        guard enabled else { return }
        while !Task.isCancelled {
            draw()
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    func finish() {
        guard enabled else { return }
        draw()
        FileHandle.standardError.write(Data("\n".utf8))
    }

    private func draw() {
        let placed = ledger.placedCount
        let done = watcher.outcomes(of: ledger.placedIDs).count
        let width = 30
        let filled = total == 0 ? width : width * done / total
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let errors = ledger.errors.values.reduce(0, +)
        FileHandle.standardError.write(Data("\r\(bar) placed \(placed)/\(total)  terminal \(done)  errors \(errors) ".utf8))
    }
}

/// One placed order, as `--record` writes it: wall-clock times, so that a reader can line them up with its own.
enum OrderRecord {
    static func csv(ledger: PlacementLedger, watcher: OutcomeWatcher, wallClockAt reference: (Date, ContinuousClock.Instant)) -> String {
        func milliseconds(_ instant: ContinuousClock.Instant) -> String {
            String(Int64((reference.0.timeIntervalSince1970 + (instant - reference.1).seconds) * 1000))
        }
        let placed = ledger.placed
        let outcomes = watcher.outcomes(of: Set(placed.keys))
        var lines = ["order_id,placed_at_ms,ended_at_ms,outcome"]
        for (id, placedAt) in placed.sorted(by: { $0.value < $1.value }) {
            let outcome = outcomes[id]
            let name = outcome.map { $0.confirmed ? "confirmed" : "cancelled" } ?? "pending"
            lines.append("\(id),\(milliseconds(placedAt)),\(outcome.map { milliseconds($0.seenAt) } ?? ""),\(name)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The generator's closing table.
struct Summary: Codable {
    let placed: Int
    let confirmed: Int
    let cancelledPaymentDeclined: Int
    let cancelledOutOfStock: Int
    let pending: Int
    /// Requests that failed for good, after their retries.
    let httpErrors: Int
    /// Requests sent again after failing on the way.
    let retries: Int
    let errorKinds: [String: Int]
    let ordersPerSecond: Double
    /// Orders accepted per second while placing: below an open loop's rate when it fell behind.
    let placedPerSecond: Double
    let latencyMilliseconds: [String: Double]
    /// CPU (user and system) this generator used, so that a benchmark can list it apart from the shop's.
    let cpuSeconds: Double

    init(ledger: PlacementLedger, watcher: OutcomeWatcher, placedIn: Duration) {
        let placedAt = ledger.placed
        let outcomes = watcher.outcomes(of: Set(placedAt.keys))
        placed = placedAt.count
        confirmed = outcomes.values.filter(\.confirmed).count
        cancelledPaymentDeclined = outcomes.values.filter { $0.reason == .paymentDeclined }.count
        cancelledOutOfStock = outcomes.values.filter { $0.reason == .outOfStock }.count
        pending = placed - outcomes.count
        errorKinds = ledger.errors
        httpErrors = errorKinds.values.reduce(0, +)
        retries = ledger.retries
        let lastOutcome = outcomes.values.map(\.seenAt).max()
        let firstPlacement = placedAt.values.min()
        let span = zip2(firstPlacement, lastOutcome).map { $1 - $0 } ?? placedIn
        ordersPerSecond = Double(outcomes.count) / max(span.seconds, 0.001)
        placedPerSecond = Double(placed) / max(placedIn.seconds, 0.001)
        let latencies = outcomes.compactMap { id, outcome in placedAt[id].map { (outcome.seenAt - $0).seconds * 1000 } }.sorted()
        latencyMilliseconds = ["p50": latencies.percentile(0.50), "p95": latencies.percentile(0.95), "p99": latencies.percentile(0.99),
                               "max": latencies.last ?? 0]
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        cpuSeconds = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    var table: String {
        let latency = ["p50", "p95", "p99", "max"].map { "\($0) \(String(format: "%.1f", latencyMilliseconds[$0] ?? 0)) ms" }.joined(separator: "  ")
        return """
        placed                      \(placed)
        confirmed                   \(confirmed)
        cancelled payment-declined  \(cancelledPaymentDeclined)
        cancelled out-of-stock      \(cancelledOutOfStock)
        still pending               \(pending)
        requests failed             \(httpErrors)\(errorKinds.isEmpty ? "" : "  " + errorKinds.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
        requests retried            \(retries)
        orders/s placed             \(String(format: "%.0f", placedPerSecond))
        orders/s to terminal        \(String(format: "%.0f", ordersPerSecond))
        placed → terminal           \(latency)
        """
    }
}

private func zip2<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
    guard let a, let b else { return nil }
    return (a, b)
}
