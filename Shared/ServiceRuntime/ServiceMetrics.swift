import DomainEvents
import Foundation
import Kafka
import Metrics
import Prometheus
import Synchronization

/// A service's metrics: recorded through swift-metrics, shown in Prometheus text format at `GET /metrics`.
/// Every name is `emporium_<what>_<unit>`, counters end in `_total`, durations are seconds; labels never carry
/// unbounded values such as order IDs. docs/observability.md lists each one.
public enum ServiceMetrics {
    /// The registry `GET /metrics` shows. The first use bootstraps swift-metrics with it, once per process.
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        factory.defaultValueHistogramBuckets = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000]
        // EMPORIUM_METRICS=off leaves swift-metrics on its no-op backend: for measuring what recording costs.
        if ProcessInfo.processInfo.environment["EMPORIUM_METRICS"] != "off" { MetricsSystem.bootstrap(factory) }
        return registry
    }()

    public static func bootstrap() { _ = registry }

    /// The Prometheus text of everything recorded.
    public static func exposition() -> String {
        registry.emitToString() + EventAgeHistogram.shared.exposition()
    }
}

/// `emporium_event_age_seconds{topic}`: how old each event was when this service applied it, which is the
/// latency of that hop of the saga. Every applied event is recorded, so a batch sorts its ages into buckets
/// first and merges them here under one lock, rather than taking a histogram's lock once per event.
final class EventAgeHistogram: Sendable {
    static let shared = EventAgeHistogram()
    static let bounds: [Double] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    struct Buckets: Sendable {
        /// Per bound, the events at or under it and above the one before; the last slot is above every bound.
        var counts = [Int](repeating: 0, count: EventAgeHistogram.bounds.count + 1)
        var sum = 0.0

        mutating func add(_ seconds: Double) {
            counts[EventAgeHistogram.bounds.firstIndex { seconds <= $0 } ?? EventAgeHistogram.bounds.count] += 1
            sum += seconds
        }

        mutating func merge(_ other: Buckets) {
            for index in counts.indices { counts[index] += other.counts[index] }
            sum += other.sum
        }
    }

    private let topics = Mutex<[String: Buckets]>([:])

    func merge(_ batch: [String: Buckets]) {
        topics.withLock { topics in
            for (topic, buckets) in batch { topics[topic, default: Buckets()].merge(buckets) }
        }
    }

    func exposition() -> String {
        let snapshot = topics.withLock { $0 }
        guard !snapshot.isEmpty else { return "" }
        var text = "# TYPE emporium_event_age_seconds histogram\n"
        for (topic, buckets) in snapshot.sorted(by: { $0.key < $1.key }) {
            var cumulative = 0
            for (index, bound) in Self.bounds.enumerated() {
                cumulative += buckets.counts[index]
                text += "emporium_event_age_seconds_bucket{topic=\"\(topic)\",le=\"\(bound)\"} \(cumulative)\n"
            }
            cumulative += buckets.counts[Self.bounds.count]
            text += "emporium_event_age_seconds_bucket{topic=\"\(topic)\",le=\"+Inf\"} \(cumulative)\n"
            text += "emporium_event_age_seconds_sum{topic=\"\(topic)\"} \(buckets.sum)\n"
            text += "emporium_event_age_seconds_count{topic=\"\(topic)\"} \(cumulative)\n"
        }
        return text
    }
}

/// What one batch did, for metrics: counts per topic, type and outcome; the age of each applied event; and the
/// domain counters of what it emitted. Collected while the batch runs, recorded once after it commits, so the
/// hot path adds no lock per event.
public struct BatchTally: Sendable {
    public enum Outcome: String, Sendable { case applied, skipped, duplicate, alreadyApplied = "already_applied", deadLettered = "dead_lettered" }

    struct Key: Hashable {
        let topic: String
        let type: String
        let outcome: Outcome
    }

    var counts: [Key: Int] = [:]
    /// Per topic, how long after its `occurredAt` each event was applied.
    var ages: [String: EventAgeHistogram.Buckets] = [:]
    var emitted: [DomainCounter: Int] = [:]

    mutating func count(_ message: ConsumedMessage, _ outcome: Outcome) {
        counts[Key(topic: message.topic, type: message.header(Wire.Header.eventType) ?? "unknown", outcome: outcome), default: 0] += 1
    }

    mutating func applied(_ envelope: Envelope, topic: String, now: Date) {
        if let occurred = Timestamp.parse(envelope.occurredAt) {
            ages[topic, default: EventAgeHistogram.Buckets()].add(max(0, now.timeIntervalSince(occurred)))
        }
    }

    mutating func emitted(_ envelopes: [Envelope]) {
        for envelope in envelopes { emitted[DomainCounter(envelope.event), default: 0] += 1 }
    }

    mutating func merge(_ other: BatchTally) {
        counts.merge(other.counts, uniquingKeysWith: +)
        emitted.merge(other.emitted, uniquingKeysWith: +)
        for (topic, buckets) in other.ages { ages[topic, default: EventAgeHistogram.Buckets()].merge(buckets) }
    }
}

/// The domain counter an emitted event adds to: orders placed, confirmed and cancelled (by reason), payments
/// authorized, declined, captured and refunded, stock reserved, short, released and restocked. Each service
/// emits only its own events, so each shows only its own domain counters.
public struct DomainCounter: Hashable, Sendable {
    public let name: String
    public let dimensions: [(String, String)]

    public init(_ event: DomainEvent) {
        switch event {
        case .orderPlaced: (name, dimensions) = ("emporium_orders_placed_total", [])
        case .orderConfirmed: (name, dimensions) = ("emporium_orders_confirmed_total", [])
        case .orderCancelled(let e): (name, dimensions) = ("emporium_orders_cancelled_total", [("reason", e.reason.rawValue)])
        case .paymentAuthorized: (name, dimensions) = ("emporium_payments_authorized_total", [])
        case .paymentDeclined: (name, dimensions) = ("emporium_payments_declined_total", [])
        case .paymentCaptured: (name, dimensions) = ("emporium_payments_captured_total", [])
        case .paymentRefunded: (name, dimensions) = ("emporium_payments_refunded_total", [])
        case .stockReserved: (name, dimensions) = ("emporium_stock_reservations_total", [])
        case .stockShortage: (name, dimensions) = ("emporium_stock_shortages_total", [])
        case .stockReleased: (name, dimensions) = ("emporium_stock_releases_total", [])
        case .stockRestocked: (name, dimensions) = ("emporium_stock_restocks_total", [])
        case .notificationSent: (name, dimensions) = ("emporium_notifications_recorded_total", [])
        }
    }

    public static func == (lhs: DomainCounter, rhs: DomainCounter) -> Bool {
        lhs.name == rhs.name && lhs.dimensions.elementsEqual(rhs.dimensions) { $0 == $1 }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        for (key, value) in dimensions { hasher.combine(key); hasher.combine(value) }
    }

    /// Counts an event emitted outside a consumed batch (by an HTTP request), once its transaction committed.
    public static func record(_ event: DomainEvent) {
        let counter = DomainCounter(event)
        Instruments.shared.counter(counter.name, counter.dimensions).increment()
    }
}

/// Counters and timers by name and labels, each made once: swift-metrics' factory takes a lock and builds a
/// key on every lookup, so the hot paths keep theirs here.
final class Instruments: Sendable {
    static let shared = Instruments()
    private let counters = Mutex<[String: Metrics.Counter]>([:])
    private let timers = Mutex<[String: Metrics.Timer]>([:])

    private init() { ServiceMetrics.bootstrap() }

    func counter(_ name: String, _ dimensions: [(String, String)]) -> Metrics.Counter {
        Self.cached(name, dimensions, in: counters) { Metrics.Counter(label: name, dimensions: dimensions) }
    }

    func timer(_ name: String, _ dimensions: [(String, String)]) -> Metrics.Timer {
        Self.cached(name, dimensions, in: timers) { Metrics.Timer(label: name, dimensions: dimensions) }
    }

    private static func cached<T>(_ name: String, _ dimensions: [(String, String)], in cache: borrowing Mutex<[String: T]>, make: () -> T) -> T {
        cache.withLock { instruments in
            let key = key(name, dimensions)
            if let instrument = instruments[key] { return instrument }
            let instrument = make()
            instruments[key] = instrument
            return instrument
        }
    }

    private static func key(_ name: String, _ dimensions: [(String, String)]) -> String {
        dimensions.reduce(name) { "\($0)|\($1.0)=\($1.1)" }
    }
}

/// The consumer side's instruments, recorded once per batch, never per event.
final class ConsumerMetrics: Sendable {
    static let shared = ConsumerMetrics()

    private let batchSize: Metrics.Recorder
    private let transaction: Metrics.Timer

    private init() {
        ServiceMetrics.bootstrap()
        batchSize = Metrics.Recorder(label: "emporium_consumer_batch_messages", aggregate: true)
        transaction = Metrics.Timer(label: "emporium_consumer_batch_transaction_duration_seconds")
    }

    func record(_ tally: BatchTally, messages: Int, transaction duration: Duration) {
        batchSize.record(messages)
        transaction.recordNanoseconds(duration.nanoseconds)
        for (key, count) in tally.counts {
            Instruments.shared.counter("emporium_events_consumed_total", [("topic", key.topic), ("type", key.type), ("outcome", key.outcome.rawValue)])
                .increment(by: count)
        }
        EventAgeHistogram.shared.merge(tally.ages)
        recordEmitted(tally.emitted)
    }

    func recordEmitted(_ emitted: [DomainCounter: Int]) {
        for (domain, count) in emitted { Instruments.shared.counter(domain.name, domain.dimensions).increment(by: count) }
    }
}

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
