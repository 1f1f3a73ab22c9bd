import DomainEvents
import Foundation
import Kafka
import ServiceRuntime
import Synchronization

/// What the console knows from reading every topic from the beginning as a group of its own: orders per second
/// by outcome, orders in flight, how long each hop of the saga takes, the latest orders.
final class ConsoleFeed: Sendable {
    /// One hop: an event and the event it caused, e.g. `OrderPlaced → PaymentAuthorized`, with the service
    /// that did the work.
    struct Hop: Hashable, Codable, Sendable {
        let from: String
        let to: String
        let service: String
    }

    struct HopLatency: Codable, Sendable {
        let from: String
        let to: String
        let service: String
        let count: Int
        let p50: Double
        let p99: Double
    }

    struct RecentOrder: Codable, Sendable {
        let orderId: String
        let customerId: String
        let totalCents: Int
        let placedAt: String
        var status: String
    }

    /// Per second of `occurredAt`: orders placed, confirmed and cancelled.
    struct Second: Codable, Sendable {
        let at: Int64
        var placed = 0
        var confirmed = 0
        var cancelled = 0
    }

    struct View: Codable, Sendable {
        let placed: Int
        let confirmed: Int
        let cancelled: Int
        let inFlight: Int
        let seconds: [Second]
        let hops: [HopLatency]
        let recent: [RecentOrder]
    }

    private struct State {
        var placed = 0
        var confirmed = 0
        var cancelled = 0
        var open = Set<String>()
        var seconds: [Int64: Second] = [:]
        /// Recent events by ID, to find each event's cause: type and time.
        var events: [String: (type: String, at: Date)] = [:]
        var eventOrder: [String] = []
        var hops: [Hop: [Double]] = [:]
        var recent: [RecentOrder] = []
    }

    static let window = 60
    private static let samplesPerHop = 2_000
    private static let rememberedEvents = 200_000

    private let state = Mutex(State())
    private let consumer: KafkaConsumer
    private let task = Mutex<Task<Void, Error>?>(nil)

    init(configuration: KafkaConfiguration) throws {
        consumer = try KafkaConsumer(
            configuration: configuration, group: "emporium-console-\(UUID().uuidString.prefix(8))",
            topics: Topic.allCases.map(\.name), batching: ConsumerBatching(maxMessages: 2_000))
        task.withLock { $0 = Task { [self] in try await follow() } }
    }

    func stop() async {
        await consumer.close()
        _ = try? await task.withLock { $0 }?.value
    }

    private func follow() async throws {
        for try await batch in consumer.batches {
            let envelopes = batch.messages.compactMap { try? Wire.decode($0) }
            state.withLock { state in for envelope in envelopes { Self.apply(envelope, to: &state) } }
            try await consumer.commit(batch)
        }
    }

    private static func apply(_ envelope: Envelope, to state: inout State) {
        guard let at = Timestamp.parse(envelope.occurredAt) else { return }
        let second = Int64(at.timeIntervalSince1970)
        state.events[envelope.eventId] = (envelope.type.rawValue, at)
        state.eventOrder.append(envelope.eventId)
        if state.eventOrder.count > rememberedEvents {
            for id in state.eventOrder.prefix(rememberedEvents / 4) { state.events[id] = nil }
            state.eventOrder.removeFirst(rememberedEvents / 4)
        }
        if let cause = envelope.causationId.flatMap({ state.events[$0] }) {
            let hop = Hop(from: cause.type, to: envelope.type.rawValue, service: envelope.source)
            state.hops[hop, default: []].append(at.timeIntervalSince(cause.at) * 1000)
            if state.hops[hop]!.count > samplesPerHop { state.hops[hop]!.removeFirst(state.hops[hop]!.count - samplesPerHop) }
        }
        switch envelope.event {
        case .orderPlaced(let order):
            state.placed += 1
            state.open.insert(order.orderId)
            state.seconds[second, default: Second(at: second)].placed += 1
            state.recent.insert(RecentOrder(orderId: order.orderId, customerId: order.customerId, totalCents: order.totalCents,
                                            placedAt: envelope.occurredAt, status: "pending"), at: 0)
            if state.recent.count > 12 { state.recent.removeLast() }
        case .orderConfirmed(let order):
            end(order.orderId, as: "confirmed", at: second, in: &state)
        case .orderCancelled(let order):
            end(order.orderId, as: "cancelled", at: second, in: &state)
        default:
            break
        }
    }

    private static func end(_ orderId: String, as status: String, at second: Int64, in state: inout State) {
        guard state.open.remove(orderId) != nil else { return }
        if status == "confirmed" {
            state.confirmed += 1
            state.seconds[second, default: Second(at: second)].confirmed += 1
        } else {
            state.cancelled += 1
            state.seconds[second, default: Second(at: second)].cancelled += 1
        }
        if let index = state.recent.firstIndex(where: { $0.orderId == orderId }) { state.recent[index].status = status }
    }

    /// The last `window` seconds up to now, hop latencies as percentiles, the latest orders.
    func view(now: Date = Date()) -> View {
        state.withLock { state in
            let current = Int64(now.timeIntervalSince1970)
            let range = (current - Int64(Self.window) + 1)...current
            state.seconds = state.seconds.filter { $0.key >= range.lowerBound - 5 }
            let hops = state.hops.map { hop, samples in
                let sorted = samples.sorted()
                return HopLatency(from: hop.from, to: hop.to, service: hop.service, count: samples.count,
                                  p50: sorted.percentile(0.50), p99: sorted.percentile(0.99))
            }.sorted { ($0.from, $0.to) < ($1.from, $1.to) }
            return View(placed: state.placed, confirmed: state.confirmed, cancelled: state.cancelled, inFlight: state.open.count,
                        seconds: range.map { state.seconds[$0] ?? Second(at: $0) }, hops: hops, recent: state.recent)
        }
    }

}
