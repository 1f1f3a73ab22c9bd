import ArgumentParser
import Catalogue
import DomainEvents
import Foundation
import GRDB
import Kafka

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check every invariant of the event contract against the topics and the services' databases.",
        discussion: "Reads every topic from the beginning. Prints one line per invariant and exits 1 on any violation.")

    @Option(help: "Directory of the services' databases (default: <var-dir>/db).")
    var databases: String?

    @Option(help: "Directory of notification-service's emails (default: <var-dir>/mail).")
    var mail: String?

    @OptionGroup var kafka: KafkaOptions

    func run() async throws {
        let configuration = try kafka.resolve()
        let reader = TopicReader(configuration: configuration)
        let group = "emporium-audit-\(UUID().uuidString.prefix(8))"
        var log: [Topic: [ConsumedMessage]] = [:]
        var deadLetters: [ConsumedMessage] = []
        for topic in Topic.allCases {
            log[topic] = try await reader.readToEnd(topic.name, group: group, timeout: .seconds(120))
            deadLetters += try await reader.readToEnd(topic.deadLetterName, group: group, timeout: .seconds(120))
        }
        let partitions = try await KafkaAdmin(configuration: configuration).partitionCounts(of: Topic.allCases.map(\.name))
        let dbDirectory = databases ?? "\(kafka.varDir)/db"
        var audit = Audit(
            log: log, deadLetters: deadLetters, partitions: partitions, catalogue: .standard, credit: .standard,
            inventory: try? DatabaseQueue(path: "\(dbDirectory)/inventory-service.sqlite", configuration: Self.readOnly),
            payments: try? DatabaseQueue(path: "\(dbDirectory)/payment-service.sqlite", configuration: Self.readOnly),
            mailDirectory: mail ?? "\(kafka.varDir)/mail")
        let results = try audit.run()
        for result in results { print(result.line) }
        let perTopic = Dictionary(grouping: deadLetters, by: \.topic).mapValues(\.count)
        print("  dead letters: " + Topic.allCases.map { "\($0.deadLetterName) \(perTopic[$0.deadLetterName] ?? 0)" }.joined(separator: ", "))
        if results.contains(where: { !$0.violations.isEmpty }) { throw ExitCode.failure }
    }

    static var readOnly: Configuration {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        return configuration
    }
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

/// The invariants of EVENTS.md, checked over what the topics hold and what the databases say.
struct Audit {
    let log: [Topic: [ConsumedMessage]]
    let deadLetters: [ConsumedMessage]
    let partitions: [String: Int32]
    let catalogue: Catalogue
    let credit: CreditPolicy
    let inventory: DatabaseQueue?
    let payments: DatabaseQueue?
    let mailDirectory: String

    /// Every decoded message, copies included, in log order per topic.
    private var logged: [Topic: [Envelope]] = [:]
    /// Every event once (copies with a repeated eventId dropped), in log order per topic.
    private var events: [Topic: [Envelope]] = [:]
    private var copies = 0
    private var undecodable: [ConsumedMessage] = []

    init(log: [Topic: [ConsumedMessage]], deadLetters: [ConsumedMessage], partitions: [String: Int32], catalogue: Catalogue,
         credit: CreditPolicy, inventory: DatabaseQueue?, payments: DatabaseQueue?, mailDirectory: String) {
        self.log = log
        self.deadLetters = deadLetters
        self.partitions = partitions
        self.catalogue = catalogue
        self.credit = credit
        self.inventory = inventory
        self.payments = payments
        self.mailDirectory = mailDirectory
    }

    mutating func run() throws -> [AuditResult] {
        var seen = Set<String>()
        for (topic, messages) in log {
            for message in messages.sorted(by: { ($0.partition, $0.offset) < ($1.partition, $1.offset) }) {
                guard let envelope = try? Wire.decode(message) else {
                    undecodable.append(message)
                    continue
                }
                logged[topic, default: []].append(envelope)
                if seen.insert(envelope.eventId).inserted { events[topic, default: []].append(envelope) } else { copies += 1 }
            }
        }
        return [sequences(), deadLettered(), placement(), terminals(), confirmedOrders(), cancelledOrders(), try ledger(), try creditLimits(), notifications()]
    }

    private func all(_ type: EventType) -> [Envelope] { events[type.topic, default: []].filter { $0.type == type } }

    /// Each (topic, key) carries 1, 2, 3, … in log order; copies of one event are allowed, two events on one number are not.
    private func sequences() -> AuditResult {
        var violations: [String] = []
        var keys = 0
        for (topic, envelopes) in logged {
            var last: [String: (sequence: Int64, eventId: String)] = [:]
            for envelope in envelopes {
                let previous = last[envelope.key]
                if let previous, previous.sequence == envelope.sequence {
                    if previous.eventId != envelope.eventId { violations.append("\(topic.name)/\(envelope.key): two events with sequence \(envelope.sequence)") }
                    continue
                }
                if envelope.sequence != (previous?.sequence ?? 0) + 1 {
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
    private func deadLettered() -> AuditResult {
        var letters = Set<String>()
        for letter in deadLetters {
            letters.insert("\(letter.header("dlq-source-topic") ?? "")[\(letter.header("dlq-source-partition") ?? "")]@\(letter.header("dlq-source-offset") ?? "")")
        }
        let violations = undecodable.map { "\($0.topicPartition)@\($0.offset)" }.filter { !letters.contains($0) }.map { "\($0) is not an event and was not dead-lettered" }
        return AuditResult(name: "every message that is not a valid event was dead-lettered",
                           checked: "\(undecodable.count) such messages, \(deadLetters.count) dead letters", violations: violations)
    }

    private func placement() -> AuditResult {
        var violations: [String] = []
        var count = 0
        for (topic, messages) in log {
            guard let partitionCount = partitions[topic.name] else { continue }
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

    private var placedOrders: [String: OrderPlaced] {
        Dictionary(all(.orderPlaced).compactMap { if case .orderPlaced(let order) = $0.event { (order.orderId, order) } else { nil } }) { first, _ in first }
    }

    private func count(_ type: EventType) -> [String: Int] {
        all(type).reduce(into: [:]) { counts, envelope in counts[envelope.correlationId ?? "", default: 0] += 1 }
    }

    private func terminals() -> AuditResult {
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

    private func confirmedOrders() -> AuditResult {
        let (authorized, refunded, reserved, released) = (count(.paymentAuthorized), count(.paymentRefunded), count(.stockReserved), count(.stockReleased))
        var violations: [String] = []
        for id in count(.orderConfirmed).keys {
            let lines = placedOrders[id]?.lines.count ?? -1
            if authorized[id, default: 0] != 1 { violations.append("\(id): \(authorized[id, default: 0]) authorizations") }
            if refunded[id, default: 0] != 0 { violations.append("\(id): refunded") }
            if reserved[id, default: 0] != lines { violations.append("\(id): \(reserved[id, default: 0]) of \(lines) lines reserved") }
            if released[id, default: 0] != 0 { violations.append("\(id): stock released") }
        }
        return AuditResult(name: "confirmed ⇒ one authorization, no refund, every line reserved, none released",
                           checked: "\(count(.orderConfirmed).count) orders", violations: violations)
    }

    private func cancelledOrders() -> AuditResult {
        let (authorized, refunded) = (count(.paymentAuthorized), count(.paymentRefunded))
        var reservedLines: [String: [String: Int]] = [:]
        var releasedLines: [String: [String: Int]] = [:]
        for envelope in all(.stockReserved) { if case .stockReserved(let e) = envelope.event { reservedLines[e.orderId, default: [:]][e.productId, default: 0] += 1 } }
        for envelope in all(.stockReleased) { if case .stockReleased(let e) = envelope.event { releasedLines[e.orderId, default: [:]][e.productId, default: 0] += 1 } }
        var violations: [String] = []
        for id in count(.orderCancelled).keys {
            let expectedRefunds = authorized[id, default: 0] > 0 ? 1 : 0
            if refunded[id, default: 0] != expectedRefunds { violations.append("\(id): \(refunded[id, default: 0]) refunds for \(authorized[id, default: 0]) authorizations") }
            if reservedLines[id, default: [:]] != releasedLines[id, default: [:]] {
                violations.append("\(id): reserved \(reservedLines[id, default: [:]]) but released \(releasedLines[id, default: [:]])")
            }
        }
        return AuditResult(name: "cancelled ⇒ refunded once if authorized, every reserved line released once",
                           checked: "\(count(.orderCancelled).count) orders", violations: violations)
    }

    /// Per product: each movement's `available` follows from the one before, never negative, ending where the database is.
    private func ledger() throws -> AuditResult {
        var available: [String: Int] = [:]
        var violations: [String] = []
        for envelope in events[.inventory, default: []] {
            let (product, delta, after): (String, Int, Int)
            switch envelope.event {
            case .stockReserved(let e): (product, delta, after) = (e.productId, -e.quantity, e.available)
            case .stockReleased(let e): (product, delta, after) = (e.productId, e.quantity, e.available)
            case .stockRestocked(let e): (product, delta, after) = (e.productId, e.quantity, e.available)
            case .stockShortage(let e):
                let current = available[e.productId] ?? catalogue.product(e.productId)?.initialStock ?? 0
                if e.available != current { violations.append("\(e.productId): shortage says \(e.available) available, ledger says \(current)") }
                continue
            default: continue
            }
            let expected = (available[product] ?? catalogue.product(product)?.initialStock ?? 0) + delta
            if after != expected { violations.append("\(product): \(after) after \(envelope.type.rawValue), expected \(expected)") }
            if after < 0 { violations.append("\(product): stock went to \(after)") }
            available[product] = after
        }
        if let inventory {
            let stored = try inventory.read { db in
                Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT productId, available FROM stock").map { ($0["productId"] as String, $0["available"] as Int) })
            }
            for (product, value) in available where stored[product] != value {
                violations.append("\(product): ledger ends at \(value), inventory-service has \(stored[product].map(String.init) ?? "nothing")")
            }
        }
        let checked = "\(available.count) products\(inventory == nil ? " (no inventory database to compare)" : ", matching inventory-service's database")"
        return AuditResult(name: "the inventory ledger replays and never goes negative", checked: checked, violations: violations)
    }

    private func creditLimits() throws -> AuditResult {
        var spent: [String: Int] = [:]
        for envelope in events[.payments, default: []] {
            switch envelope.event {
            case .paymentAuthorized(let e): spent[e.customerId, default: 0] += e.amountCents
            case .paymentRefunded(let e): spent[e.customerId, default: 0] -= e.amountCents
            default: break
            }
        }
        var violations = spent.filter { $0.value > credit.limitCents(for: $0.key) }.map { "\($0.key) spent \($0.value) of \(credit.limitCents(for: $0.key))" }
        if let payments {
            let stored = try payments.read { db in
                Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT customerId, usedCents FROM customerCredit").map { ($0["customerId"] as String, $0["usedCents"] as Int) })
            }
            for (customer, value) in spent where stored[customer, default: 0] != value {
                violations.append("\(customer): the log says \(value) spent, payment-service says \(stored[customer, default: 0])")
            }
        }
        return AuditResult(name: "authorized minus refunded stays within each customer's credit",
                           checked: "\(spent.count) customers", violations: violations)
    }

    private func notifications() -> AuditResult {
        let terminal = Set(count(.orderConfirmed).keys).union(count(.orderCancelled).keys)
        let sent = count(.notificationSent)
        var violations: [String] = []
        for id in terminal where sent[id, default: 0] != 1 { violations.append("\(id): \(sent[id, default: 0]) notifications") }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: mailDirectory)) ?? []
        var emails: [String: Int] = [:]
        for file in files where file.hasSuffix(".eml") { emails[String(file.split(separator: ".").first ?? ""), default: 0] += 1 }
        if !files.isEmpty || !terminal.isEmpty {
            for id in terminal where emails[id, default: 0] != 1 { violations.append("\(id): \(emails[id, default: 0]) emails in \(mailDirectory)") }
        }
        return AuditResult(name: "exactly one NotificationSent and one email per terminal order",
                           checked: "\(terminal.count) orders, \(emails.values.reduce(0, +)) emails", violations: violations)
    }
}
