import Catalogue
import DomainEvents
import Foundation
import GRDB
import Kafka
import ServiceRuntime

/// One key, one partition, one order; across partitions there is no order at all.
struct Ordering: Experiment {
    let name = "ordering"
    let claim = "a key's events share one partition and keep their order; events of keys on different partitions interleave"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop()
        lab.step("placing 300 orders from 20 customers")
        _ = try await lab.shop.generate(orders: 300, seed: lab.seed, customers: 20)
        try await lab.shop.waitUntilAtRest()
        lab.step("reading orders from the beginning")
        let events = try await lab.read(Topic.orders.name).sorted { ($0.partition, $0.offset) < ($1.partition, $1.offset) }.compactMap { message in
            (try? Wire.decode(message, checkingValues: false)).map { (message: message, envelope: $0) }
        }
        let byKey = Dictionary(grouping: events, by: \.envelope.key)
        var backwards = 0
        var split = 0
        for (_, keyed) in byKey {
            if Set(keyed.map(\.message.partition)).count > 1 { split += 1 }
            for (earlier, later) in zip(keyed, keyed.dropFirst()) where later.envelope.sequence < earlier.envelope.sequence
                || (later.envelope.sequence == earlier.envelope.sequence && later.envelope.eventId != earlier.envelope.eventId) {
                backwards += 1
            }
        }
        let busiest = byKey.sorted { ($0.value.count, $1.key) > ($1.value.count, $0.key) }.prefix(3)
        lab.evidence(["CUSTOMER (KEY)", "PARTITION", "EVENTS", "OFFSETS", "SEQUENCES IN LOG ORDER"], busiest.map { key, keyed in
            let sequences = keyed.prefix(14).map { String($0.envelope.sequence) }.joined(separator: " ") + (keyed.count > 14 ? " …" : "")
            return [key, Set(keyed.map(\.message.partition)).map(String.init).joined(separator: ","), String(keyed.count),
                    "\(keyed.first!.message.offset)…\(keyed.last!.message.offset)", sequences]
        })
        lab.say("    over all \(events.count) events of \(byKey.count) keys: \(backwards) steps backwards, \(split) keys on more than one partition")

        // The contrast: two busy customers on different partitions, their events by the time they were written.
        let keys = busiest.map(\.key)
        guard let first = keys.first, let partitionA = byKey[first]?.first?.message.partition,
              let second = byKey.sorted(by: { $0.value.count > $1.value.count })
                .first(where: { $0.value.first?.message.partition != partitionA })?.key else {
            return .notShown("every busy customer landed in one partition, so there is no contrast to show")
        }
        let merged = (byKey[first]! + byKey[second]!).sorted { ($0.envelope.occurredAt, $0.message.offset) < ($1.envelope.occurredAt, $1.message.offset) }
        let switches = zip(merged, merged.dropFirst()).filter { $0.envelope.key != $1.envelope.key }.count
        lab.say("    \(first) (partition \(partitionA)) and \(second) (partition \(byKey[second]!.first!.message.partition)) by the time each event occurred:")
        lab.say("    " + merged.prefix(16).map { "\($0.envelope.key == first ? "A" : "B")\($0.envelope.sequence)" }.joined(separator: " ") + " …  (\(switches) switches)")
        lab.say("    a consumer of both partitions sees them in either order: Kafka orders a partition, not a topic")
        return .check(backwards == 0 && split == 0 && switches > 1,
                      shown: "each of \(byKey.count) keys kept to one partition with its sequence never going backwards, while two keys on two partitions interleaved \(switches) times",
                      otherwise: "\(backwards) sequence steps went backwards and \(split) keys spread over partitions (switches \(switches))")
    }
}

/// A topic is a replayable history: a new reader from offset 0 rebuilds state nobody asked for before.
struct Replay: Experiment {
    let name = "replay"
    let claim = "a new consumer group reading orders from offset 0 rebuilds revenue per product as order-service's database has it; and order-service's database, deleted, is rebuilt from the log"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop()
        try await lab.place(300)
        lab.step("a fresh consumer group reads orders from offset 0 and sums confirmed orders' lines per product")
        var lines: [String: [OrderLine]] = [:]
        var confirmed: Set<String> = []
        var read = 0
        for message in try await lab.read(Topic.orders.name) {
            read += 1
            guard let envelope = try? Wire.decode(message, checkingValues: false) else { continue }
            switch envelope.event {
            case .orderPlaced(let placed): lines[placed.orderId] = placed.lines
            case .orderConfirmed(let order): confirmed.insert(order.orderId)
            default: break
            }
        }
        var fromLog: [String: Int] = [:]
        for order in confirmed {
            for line in lines[order] ?? [] { fromLog[line.productId, default: 0] += line.quantity * line.unitPriceCents }
        }
        lab.step("reading the same from order-service's database")
        let fromDatabase = try await AuditCommand.column("""
            SELECT productId, sum(quantity * unitPriceCents) FROM orderLine JOIN customerOrder USING (orderId)
            WHERE status = 'confirmed' GROUP BY productId
            """, in: try AuditCommand.open(lab.shop.databasePath(of: "order-service")))
        let products = Set(fromLog.keys).union(fromDatabase.keys)
        let differing = products.filter { fromLog[$0] != fromDatabase[$0] }
        let top = products.sorted { (fromLog[$0] ?? 0, $1) > (fromLog[$1] ?? 0, $0) }.prefix(8)
        func money(_ cents: Int?) -> String { cents.map { String(format: "%.2f", Double($0) / 100) } ?? "-" }
        lab.evidence(["PRODUCT", "REVENUE FROM THE LOG", "REVENUE IN ORDER-SERVICE", ""], top.map { product in
            [product, money(fromLog[product]), money(fromDatabase[product]), fromLog[product] == fromDatabase[product] ? "=" : "≠"]
        } + [["all \(products.count) products", money(fromLog.values.reduce(0, +)), money(fromDatabase.values.reduce(0, +)), differing.isEmpty ? "=" : "≠"]])
        lab.say("    \(read) messages read, \(confirmed.count) confirmed orders")
        guard differing.isEmpty && !confirmed.isEmpty else {
            return .notShown("\(differing.count) products differ between the log and order-service's database")
        }

        let databasePath = lab.shop.databasePath(of: "order-service")
        lab.step("recording every order as order-service's database holds it (status, reason, lines, timeline)")
        let before = try OrderRecords(databasePath: databasePath)
        let member = try lab.shop.instance(of: "order-service")
        lab.step("stopping \(member.name) and deleting its database")
        lab.shop.stop(member)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: databasePath + suffix) }
        lab.step("order-service --rebuild: orders from the orders topic, positions on the topics it consumes rewound to 0")
        let rebuild = try await lab.shop.runToEnd("order-service", ["--rebuild"], log: "order-service-rebuild")
        lab.say("    " + (rebuild.output.split(separator: "\n").last(where: { $0.hasPrefix("rebuilt") }).map(String.init) ?? rebuild.output))
        guard rebuild.status == 0 else { return .notShown("order-service --rebuild exited with status \(rebuild.status)") }
        lab.step("starting order-service again: it re-reads payments, inventory and notifications into the timelines")
        _ = try await lab.shop.startInstance(of: "order-service")
        try await lab.shop.waitUntilAtRest()
        let after = try OrderRecords(databasePath: databasePath)
        let changed = Set(before.orders.keys).union(after.orders.keys).filter { before.orders[$0] != after.orders[$0] }
        lab.evidence(["ORDER-SERVICE'S DATABASE", "BEFORE", "REBUILT FROM THE LOG", ""], [
            ("orders", \.orders.count), ("confirmed", \.confirmed), ("cancelled", \.cancelled), ("order lines", \.lines),
            ("timeline events", \.timelineEvents),
        ].map { (label: String, figure: KeyPath<OrderRecords, Int>) in
            [label, String(before[keyPath: figure]), String(after[keyPath: figure]), before[keyPath: figure] == after[keyPath: figure] ? "=" : "≠"]
        })
        // The restored sequence counters are what keeps each customer's next event from going backwards.
        let more = try await lab.place(50, seedOffset: 1, "on the rebuilt database, then the audit (sequences, saga, effects)")
        let audit = try await lab.shop.audit()
        lab.say("    \(more.placed) placed, \(more.httpErrors) failed requests; audit \(audit.clean ? "clean" : "NOT clean")")
        guard audit.clean && more.httpErrors == 0 else {
            return .notShown("after the rebuild \(more.httpErrors) requests failed and the audit is \(audit.clean ? "clean" : "not clean")")
        }
        return .check(changed.isEmpty && !before.orders.isEmpty,
                      shown: "revenue from \(read) messages matches order-service's database for all \(products.count) products,"
                          + " all \(before.orders.count) orders came back from the log identical, timelines included, and the rebuilt shop audits clean",
                      otherwise: "\(changed.count) of \(before.orders.count) orders differ after the rebuild, e.g. \(changed.sorted().prefix(3).joined(separator: ", "))")
    }
}

/// Every order in order-service's database as one comparable line: what `GET /orders/{id}` shows.
struct OrderRecords {
    private(set) var orders: [String: String] = [:]
    private(set) var confirmed = 0
    private(set) var cancelled = 0
    private(set) var lines = 0
    private(set) var timelineEvents = 0

    init(databasePath: String) throws {
        let database = try AuditCommand.open(databasePath)
        try database.read { db in
            var lines: [String: [String]] = [:], timelines: [String: [String]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT orderId, productId, quantity, unitPriceCents FROM orderLine") {
                lines[row["orderId"], default: []].append("\(row["productId"] as String)×\(row["quantity"] as Int)@\(row["unitPriceCents"] as Int)")
                self.lines += 1
            }
            // Events of one order that share a millisecond may be seen in another order after a rebuild: compare as sets.
            for row in try Row.fetchAll(db, sql: "SELECT orderId, occurredAt, type, eventId FROM timelineEntry") {
                timelines[row["orderId"], default: []].append("\(row["occurredAt"] as String) \(row["type"] as String) \(row["eventId"] as String)")
                timelineEvents += 1
            }
            for row in try Row.fetchAll(db, sql: "SELECT orderId, customerId, status, reason, detail, totalCents, currency, createdAt FROM customerOrder") {
                let id: String = row["orderId"], status: String = row["status"]
                if status == "confirmed" { confirmed += 1 }
                if status == "cancelled" { cancelled += 1 }
                let customer: String = row["customerId"], reason: String? = row["reason"], detail: String? = row["detail"]
                let total: Int = row["totalCents"], currency: String = row["currency"], createdAt: String = row["createdAt"]
                let order = [customer, status, reason ?? "-", detail ?? "-", String(total), currency, createdAt]
                orders[id] = (order + [lines[id, default: []].sorted().joined(separator: ","), timelines[id, default: []].sorted().joined(separator: ",")])
                    .joined(separator: " | ")
            }
        }
    }
}

/// Retention is not a consumer's friend: what it left too long unread is deleted, and it must say so.
struct Retention: Experiment {
    let name = "retention"
    let claim = "a group left behind longer than retention loses the oldest messages, and the consumer reports the lost offsets loudly"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop()
        try await lab.place(100)
        let member = try lab.shop.instance(of: "notification-service")
        lab.step("stopping \(member.name); placing 100 more orders it will not read in time")
        lab.shop.stop(member)
        _ = try await lab.shop.generate(orders: 100, seed: lab.seed + 1)
        try await lab.shop.waitUntilAtRest()
        let admin = try KafkaAdmin(configuration: try lab.kafka())
        guard let busiest = try await admin.offsets(of: [Topic.orders.name], group: "notification-service").max(by: { $0.high < $1.high }) else {
            throw CommandFailure("orders has no partitions")
        }
        let position = busiest.committed ?? 0
        lab.step("writing 7 MB to \(busiest.partition) (the embedded cluster keeps 5 MB per partition); events nobody handles, 64 KB each")
        let producer = try KafkaProducer(configuration: try lab.kafka())
        // Random bytes: lz4 would shrink anything regular to nothing, and the log would keep it all.
        var random = SeededRandom(seed: lab.seed)
        let headers = [KafkaHeader(Wire.Header.eventType, EventType.notificationSent.rawValue), KafkaHeader(Wire.Header.eventVersion, "1")]
        for _ in 0..<4 {
            let chunk = (0..<28).map { _ in
                OutgoingMessage(topic: Topic.orders.name, key: nil, value: (0..<8_192).flatMap { _ in withUnsafeBytes(of: random.next()) { Array($0) } },
                                headers: headers, partition: busiest.partition.partition)
            }
            for result in await producer.send(chunk) { _ = try result.get() }
        }
        await producer.close()
        guard let now = try await admin.offsets(of: [Topic.orders.name]).first(where: { $0.partition == busiest.partition }) else {
            throw CommandFailure("\(busiest.partition) vanished")
        }
        let lostEvents = min(now.low, busiest.high) - position
        lab.step("the log of \(busiest.partition) now starts at \(now.low); notification-service's group stopped at \(position)")
        lab.step("starting notification-service again")
        let restarted = try await lab.shop.startInstance(of: "notification-service")
        try await lab.shop.waitUntilAtRest()
        let log = (try? String(contentsOfFile: lab.shop.logPath(restarted.name), encoding: .utf8)) ?? ""
        let report = log.split(separator: "\n").first { $0.contains("fell off the log") }
            .map { line in line.range(of: "offsets ").map { String(line[$0.lowerBound...]) } ?? String(line) }
        let metrics = try await lab.shop.http.execute(.init(url: restarted.url + "/metrics"), timeout: .seconds(5)).body.collect(upTo: 4 << 20)
        let counter = String(buffer: metrics).split(separator: "\n").first { $0.hasPrefix("emporium_consumer_offsets_fell_off_log_total") }
        lab.evidence(["", ""], [
            ["group's stored position in \(busiest.partition)", String(position)],
            ["events of the shop written there after it (before the filler)", String(busiest.high - position)],
            ["log start after 7 MB more", String(now.low)],
            ["events the group never saw", String(lostEvents)],
            ["the consumer's report", report ?? "none"],
            ["its metric", counter.map(String.init) ?? "none"],
        ])
        let reportsRange = report?.contains("offsets \(position)..<") ?? false
        let counted = counter.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
        return .check(lostEvents > 0 && reportsRange && counted >= 1,
                      shown: "\(lostEvents) events fell off the log before notification-service's group read them, and it logged offsets \(position)..<\(now.low) as lost and counted it",
                      otherwise: "lost \(lostEvents) events; the consumer \(report == nil ? "did not report it" : "reported another range")")
    }
}
