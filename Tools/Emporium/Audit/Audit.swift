import Catalogue
import DomainEvents
import Kafka
import ServiceRuntime

/// What the audit reads: every topic from the beginning, and what the services' databases and the mail
/// directory say at the end.
struct AuditInput {
    var log: [Topic: [ConsumedMessage]]
    var deadLetters: [ConsumedMessage]
    var partitions: [String: Int32]
    /// inventory-service's stock per product.
    var stock: [String: Int]
    /// payment-service's open holds per customer.
    var holds: [String: Int]
    /// The file names in notification-service's mail directory.
    var emailFiles: [String]
}

/// One invariant's verdict.
struct AuditResult {
    let name: String
    let checked: String
    let violations: [String]

    var line: String {
        violations.isEmpty
            ? "✔ \(name): \(checked)"
            : "✘ \(name): \(violations.count) violations (\(checked)); first: \(violations.prefix(3).joined(separator: "; "))"
    }
}

/// The invariants of the contract (docs/contract.md, "Invariants"), checked over what the topics hold and what
/// the databases say. It only reads its input, so each check can be shown a log with exactly one violation.
struct Audit {
    let input: AuditInput
    let catalogue: Catalogue
    let credit: CreditPolicy

    /// Every decoded message, copies included, in log order per topic.
    private var logged: [Topic: [Envelope]] = [:]
    /// Every event once (copies with a repeated eventId dropped), in log order per topic.
    private var events: [Topic: [Envelope]] = [:]
    private var copies = 0
    private var undecodable: [ConsumedMessage] = []
    private var placedOrders: [String: OrderPlaced] = [:]

    init(_ input: AuditInput, catalogue: Catalogue = .standard, credit: CreditPolicy = .standard) {
        self.input = input
        self.catalogue = catalogue
        self.credit = credit
        var seen = Set<String>()
        for (topic, messages) in input.log {
            for message in messages.sorted(by: { ($0.partition, $0.offset) < ($1.partition, $1.offset) }) {
                guard let envelope = try? Wire.decode(message, checkingValues: false) else {
                    undecodable.append(message)
                    continue
                }
                logged[topic, default: []].append(envelope)
                if seen.insert(envelope.eventId).inserted { events[topic, default: []].append(envelope) } else { copies += 1 }
            }
        }
        for envelope in events[.orders, default: []] {
            if case .orderPlaced(let order) = envelope.event, placedOrders[order.orderId] == nil { placedOrders[order.orderId] = order }
        }
    }

    func run() -> [AuditResult] {
        [sequences(), deadLettered(), placement(), terminals(), confirmedOrders(), cancelledOrders(), ledger(), holds(),
         derivedIDs(), notifications()]
    }

    private func all(_ type: EventType) -> [Envelope] { events[type.topic, default: []].filter { $0.type == type } }

    private func count(_ type: EventType) -> [String: Int] {
        all(type).reduce(into: [:]) { counts, envelope in counts[envelope.correlationId ?? "", default: 0] += 1 }
    }


    /// Each (topic, key) carries 1, 2, 3, … in log order; copies of one event are allowed, two events on one number are not.
    func sequences() -> AuditResult {
        var violations: [String] = []
        var keys = 0
        for (topic, envelopes) in logged {
            var last: [String: (sequence: Int64, eventId: String)] = [:]
            var seen = Set<String>()
            for envelope in envelopes {
                // A later copy of an event already read (a producer's retry, a replayed dead letter) is not its key's next.
                guard seen.insert(envelope.eventId).inserted else { continue }
                let previous = last[envelope.key]
                if let previous, previous.sequence == envelope.sequence {
                    if previous.eventId != envelope.eventId { violations.append("\(topic.name)/\(envelope.key): two events with sequence \(envelope.sequence)") }
                    continue
                }
                // Compared without adding, so that a forged sequence of Int64.max is reported, not a trap.
                if envelope.sequence < 1 || envelope.sequence - 1 != (previous?.sequence ?? 0) {
                    violations.append("\(topic.name)/\(envelope.key): \(previous?.sequence ?? 0) then \(envelope.sequence)")
                }
                last[envelope.key] = (envelope.sequence, envelope.eventId)
            }
            keys += last.count
        }
        return AuditResult(name: "per-key sequences are gapless and increasing", checked: "\(keys) keys, \(copies) repeated copies", violations: violations)
    }

    /// A message that is not a valid event was written by something other than its topic's writer: its consumers
    /// must have dead-lettered it (at least one dead letter names its position).
    func deadLettered() -> AuditResult {
        var letters = Set<String>()
        for letter in input.deadLetters {
            let source = [DeadLetter.Header.sourceTopic, DeadLetter.Header.sourcePartition, DeadLetter.Header.sourceOffset].map { DeadLetter.added($0, to: letter) ?? "" }
            letters.insert("\(source[0])[\(source[1])]@\(source[2])")
        }
        let violations = undecodable.map { "\($0.topicPartition)@\($0.offset)" }.filter { !letters.contains($0) }.map { "\($0) is not an event and was not dead-lettered" }
        return AuditResult(name: "every message that is not a valid event was dead-lettered",
                           checked: "\(undecodable.count) such messages, \(input.deadLetters.count) dead letters", violations: violations)
    }

    func placement() -> AuditResult {
        var violations: [String] = []
        var count = 0
        for (topic, messages) in input.log {
            guard let partitionCount = input.partitions[topic.name] else { continue }
            for message in messages {
                count += 1
                guard let key = message.key else { violations.append("\(topic.name)@\(message.offset) has no key"); continue }
                let expected = Murmur2.partition(for: key, partitionCount: partitionCount)
                if message.partition != expected {
                    violations.append("\(topic.name) key \(message.keyString ?? "?") in partition \(message.partition), murmur2 says \(expected)")
                }
            }
        }
        return AuditResult(name: "every message sits in murmur2(key) mod partitions", checked: "\(count) messages", violations: violations)
    }

    func terminals() -> AuditResult {
        let confirmed = count(.orderConfirmed)
        let cancelled = count(.orderCancelled)
        var violations: [String] = []
        for id in placedOrders.keys {
            let ends = confirmed[id, default: 0] + cancelled[id, default: 0]
            if ends != 1 { violations.append("\(id) has \(ends) terminal events") }
        }
        let checked = "\(placedOrders.count) orders: \(confirmed.count) confirmed, \(cancelled.count) cancelled"
        return AuditResult(name: "every placed order has exactly one terminal event", checked: checked, violations: violations)
    }

    func confirmedOrders() -> AuditResult {
        let (authorized, captured, refunded) = (count(.paymentAuthorized), count(.paymentCaptured), count(.paymentRefunded))
        let (reserved, released) = (count(.stockReserved), count(.stockReleased))
        var violations: [String] = []
        for id in count(.orderConfirmed).keys {
            let lines = placedOrders[id]?.lines.count ?? -1
            if authorized[id, default: 0] != 1 { violations.append("\(id): \(authorized[id, default: 0]) authorizations") }
            if captured[id, default: 0] != 1 { violations.append("\(id): \(captured[id, default: 0]) captures") }
            if refunded[id, default: 0] != 0 { violations.append("\(id): refunded") }
            if reserved[id, default: 0] != lines { violations.append("\(id): \(reserved[id, default: 0]) of \(lines) lines reserved") }
            if released[id, default: 0] != 0 { violations.append("\(id): stock released") }
        }
        return AuditResult(name: "confirmed ⇒ one authorization, one capture, no refund, every line reserved, none released",
                           checked: "\(count(.orderConfirmed).count) orders", violations: violations)
    }

    func cancelledOrders() -> AuditResult {
        let (authorized, captured, refunded) = (count(.paymentAuthorized), count(.paymentCaptured), count(.paymentRefunded))
        var reservedLines: [String: [String: Int]] = [:]
        var releasedLines: [String: [String: Int]] = [:]
        for envelope in all(.stockReserved) { if case .stockReserved(let e) = envelope.event { reservedLines[e.orderId, default: [:]][e.productId, default: 0] += 1 } }
        for envelope in all(.stockReleased) { if case .stockReleased(let e) = envelope.event { releasedLines[e.orderId, default: [:]][e.productId, default: 0] += 1 } }
        var violations: [String] = []
        for id in count(.orderCancelled).keys {
            let expectedRefunds = authorized[id, default: 0] > 0 ? 1 : 0
            if refunded[id, default: 0] != expectedRefunds { violations.append("\(id): \(refunded[id, default: 0]) refunds for \(authorized[id, default: 0]) authorizations") }
            if captured[id, default: 0] != 0 { violations.append("\(id): captured though cancelled") }
            if reservedLines[id, default: [:]] != releasedLines[id, default: [:]] {
                violations.append("\(id): reserved \(reservedLines[id, default: [:]]) but released \(releasedLines[id, default: [:]])")
            }
        }
        return AuditResult(name: "cancelled ⇒ never captured, refunded once if authorized, every reserved line released once",
                           checked: "\(count(.orderCancelled).count) orders", violations: violations)
    }

    /// Per product: each movement's `available` follows from the one before (reservations, releases and restocks),
    /// never negative, ending where inventory-service's database is.
    func ledger() -> AuditResult {
        var available: [String: Int] = [:]
        var violations: [String] = []
        for envelope in events[.inventory, default: []] {
            let (product, delta, after): (String, Int, Int)
            switch envelope.event {
            case .stockReserved(let e): (product, delta, after) = (e.productId, 0.minus(e.quantity), e.available)
            case .stockReleased(let e): (product, delta, after) = (e.productId, e.quantity, e.available)
            case .stockRestocked(let e): (product, delta, after) = (e.productId, e.quantity, e.available)
            case .stockShortage(let e):
                let current = available[e.productId] ?? catalogue.product(e.productId)?.initialStock ?? 0
                if e.available != current { violations.append("\(e.productId): shortage says \(e.available) available, ledger says \(current)") }
                continue
            default: continue
            }
            let expected = (available[product] ?? catalogue.product(product)?.initialStock ?? 0).plus(delta)
            if after != expected { violations.append("\(product): \(after) after \(envelope.type.rawValue), expected \(expected)") }
            if after < 0 { violations.append("\(product): stock went to \(after)") }
            available[product] = after
        }
        for (product, value) in available where input.stock[product] != value {
            violations.append("\(product): ledger ends at \(value), inventory-service has \(input.stock[product].map(String.init) ?? "nothing")")
        }
        return AuditResult(name: "the inventory ledger replays with its restocks, never negative, and matches inventory-service",
                           checked: "\(available.count) products", violations: violations)
    }

    /// Replays each customer's `orders` events in log order, the order payment-service decides in: a placement
    /// that was authorized adds a hold, its capture or refund ends it. The open holds never exceed the limit, a
    /// decline happened only when the order did not fit, and the holds left match payment-service's database.
    func holds() -> AuditResult {
        var authorized: [String: Int] = [:]
        var declined = Set<String>()
        var ended = Set<String>()
        for envelope in events[.payments, default: []] {
            switch envelope.event {
            case .paymentAuthorized(let e): authorized[e.orderId] = e.amountCents
            case .paymentDeclined(let e): declined.insert(e.orderId)
            case .paymentCaptured(let e): ended.insert(e.orderId)
            case .paymentRefunded(let e): ended.insert(e.orderId)
            default: break
            }
        }
        var held: [String: Int] = [:]
        var violations: [String] = []
        func end(_ orderId: String, of customer: String) {
            if ended.contains(orderId), let amount = authorized[orderId] { held[customer, default: 0] = held[customer, default: 0].minus(amount) }
        }
        for envelope in events[.orders, default: []] {
            switch envelope.event {
            case .orderPlaced(let order):
                let limit = credit.limitCents(for: order.customerId)
                let before = held[order.customerId, default: 0]
                if let amount = authorized[order.orderId] {
                    held[order.customerId] = before.plus(amount)
                    if before.plus(amount) > limit {
                        violations.append("\(order.customerId): holds reach \(before.plus(amount)) of \(limit) with \(order.orderId)")
                    }
                } else if declined.contains(order.orderId), before.plus(order.totalCents) <= limit {
                    violations.append("\(order.orderId) declined though \(before) + \(order.totalCents) fits \(limit)")
                }
            case .orderConfirmed(let order): end(order.orderId, of: order.customerId)
            case .orderCancelled(let order): end(order.orderId, of: order.customerId)
            default: break
            }
        }
        for (customer, value) in held where input.holds[customer, default: 0] != value {
            violations.append("\(customer): the log leaves \(value) held, payment-service holds \(input.holds[customer, default: 0])")
        }
        return AuditResult(name: "open holds stay within each customer's credit and match payment-service",
                           checked: "\(held.count) customers, \(authorized.count) authorizations", violations: violations)
    }

    /// An event caused by another carries the ID derived from its source, its cause and its place among what
    /// that source emitted for the cause; so the IDs of the events one source emitted for one cause are exactly
    /// the first n derived IDs.
    func derivedIDs() -> AuditResult {
        var caused: [String: [Envelope]] = [:]
        for envelopes in events.values {
            for envelope in envelopes {
                guard let cause = envelope.causationId else { continue }
                caused["\(envelope.source)/\(cause)", default: []].append(envelope)
            }
        }
        var violations: [String] = []
        for group in caused.values {
            let expected = Set(group.indices.map { EventID.derived(source: group[0].source, causationId: group[0].causationId!, index: $0) })
            for envelope in group where !expected.contains(envelope.eventId) {
                violations.append("\(envelope.type.rawValue) \(envelope.eventId) from \(envelope.source) is not derived from its cause \(envelope.causationId!)")
            }
        }
        return AuditResult(name: "every caused event carries the ID derived from its cause",
                           checked: "\(caused.values.reduce(0) { $0 + $1.count }) caused events", violations: violations)
    }

    func notifications() -> AuditResult {
        let terminal = Set(count(.orderConfirmed).keys).union(count(.orderCancelled).keys)
        let sent = count(.notificationSent)
        var violations: [String] = []
        for id in terminal where sent[id, default: 0] != 1 { violations.append("\(id): \(sent[id, default: 0]) notifications") }
        var emails: [String: Int] = [:]
        for file in input.emailFiles where file.hasSuffix(".eml") { emails[String(file.split(separator: ".").first ?? ""), default: 0] += 1 }
        for id in terminal where emails[id, default: 0] != 1 { violations.append("\(id): \(emails[id, default: 0]) emails") }
        return AuditResult(name: "exactly one NotificationSent and one email per terminal order",
                           checked: "\(terminal.count) orders, \(emails.values.reduce(0, +)) emails", violations: violations)
    }
}

/// Arithmetic that saturates instead of trapping: the audit reads logs anyone could have written, so the numbers
/// in them can be anything, and a saturated figure still fails the comparison it is in.
private extension Int {
    func plus(_ other: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    func minus(_ other: Int) -> Int {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other < 0 ? .max : .min) : difference
    }
}
