import AsyncHTTPClient
import Catalogue
import DomainEvents
import Foundation
import GRDB
import Kafka
import NIOCore
import ServiceRuntime

/// Kafka keeps what a stopped consumer has not read: its lag grows, and it catches up when it returns.
struct Durability: Experiment {
    let name = "durability"
    let claim = "while a consumer is down its messages wait in Kafka; back up, it processes every one and nothing is lost"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop()
        try await lab.place(20, "so that every group has committed offsets")
        let payment = try lab.shop.instance(of: "payment-service")
        lab.step("stopping \(payment.name)")
        lab.shop.stop(payment)
        let lagBefore = try await lab.group(of: "payment-service").lag
        let endBefore = try await lab.messages(in: .orders)
        let statusBefore = try await lab.ordersByStatus()
        lab.step("placing 200 orders while payment-service is down")
        let placed = try await lab.shop.generate(orders: 200, seed: lab.seed + 1, waitForOutcomes: false)
        try await lab.shop.waitUntilAtRest()
        let lagWhileDown = try await lab.group(of: "payment-service").lag
        let written = try await lab.messages(in: .orders) - endBefore
        let statusWhileDown = try await lab.ordersByStatus()
        let pendingWhileDown = statusWhileDown["pending", default: 0]
        lab.step("starting payment-service again")
        try await lab.shop.startInstance(of: "payment-service")
        try await lab.shop.waitUntilAtRest()
        let lagAfter = try await lab.group(of: "payment-service").lag
        let statusAfter = try await lab.ordersByStatus()
        let audit = try await lab.shop.audit()
        func counts(_ status: [String: Int]) -> [String] {
            ["pending", "confirmed", "cancelled"].map { String(status[$0, default: 0]) }
        }
        lab.evidence(["MOMENT", "PAYMENT-SERVICE LAG", "ORDERS PENDING", "CONFIRMED", "CANCELLED"], [
            ["payment-service just stopped", String(lagBefore)] + counts(statusBefore),
            ["\(placed.placed) orders later (\(written) events written to orders)", String(lagWhileDown)] + counts(statusWhileDown),
            ["payment-service back and caught up", String(lagAfter)] + counts(statusAfter),
        ])
        lab.say("    audit: \(audit.clean ? "clean" : "violations")")
        let newOrders = placed.placed
        return .check(lagWhileDown == written && written >= Int64(newOrders) && pendingWhileDown > 0 && lagAfter == 0
                      && statusAfter["pending", default: 0] == 0 && audit.clean,
                      shown: "\(written) events waited in Kafka while payment-service was down (\(pendingWhileDown) orders pending); back up, it read them all and every order ended",
                      otherwise: "lag while down \(lagWhileDown) for \(written) events written, \(statusAfter["pending", default: 0]) pending at the end, audit \(audit.clean ? "clean" : "not clean")")
    }
}

/// More orders than the shop can handle: Kafka absorbs the burst as lag, and it drains afterwards.
struct Backpressure: Experiment {
    let name = "backpressure"
    let claim = "offered twice the rate the shop sustains, Kafka buffers the excess as lag that drains afterwards, and no request is refused"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop()
        lab.step("measuring the sustained rate: 300 orders, closed loop")
        let sustained = try await lab.shop.generate(orders: 300, seed: lab.seed, concurrency: 16).ordersPerSecond
        try await lab.shop.waitUntilAtRest()
        let rate = (2 * sustained).rounded()
        let orders = Int(rate * 10)
        lab.step(String(format: "sustained %.0f orders/s; offering %.0f orders/s for 10 s (%d orders)", sustained, rate, orders))
        let shop = lab.shop
        async let burst = shop.generate(orders: orders, seed: lab.seed + 1, rate: rate, concurrency: 64)
        let sampler = Task { () -> [(Double, Int64, Int)] in
            var samples: [(Double, Int64, Int)] = []
            let start = ContinuousClock.now
            while !Task.isCancelled {
                var lag: Int64 = 0
                var outbox = 0
                for instance in shop.instances {
                    guard let status = await shop.status(of: instance) else { continue }
                    lag += status.partitions.reduce(0) { $0 + ($1.lag ?? 0) }
                    outbox += status.outboxDepth
                }
                samples.append(((ContinuousClock.now - start).seconds, lag, outbox))
                try? await Task.sleep(for: .milliseconds(500))
            }
            return samples
        }
        let summary = try await burst
        try await shop.waitUntilAtRest()
        sampler.cancel()
        let samples = await sampler.value
        let peakLag = samples.map(\.1).max() ?? 0
        let peakOutbox = samples.map(\.2).max() ?? 0
        // Read once more now that the shop is at rest: the sampler's last reading may predate it.
        var lagAtRest: Int64 = 0
        var outboxAtRest = 0
        for instance in shop.instances {
            guard let status = await shop.status(of: instance) else { throw CommandFailure("\(instance.name) did not answer /status") }
            lagAtRest += status.partitions.reduce(0) { $0 + ($1.lag ?? 0) }
            outboxAtRest += status.outboxDepth
        }
        let drained = lagAtRest == 0 && outboxAtRest == 0
        lab.say("    at rest: lag \(lagAtRest), outbox rows \(outboxAtRest)")
        lab.evidence(["SECOND", "LAG (ALL GROUPS)", "OUTBOX ROWS"], stride(from: 0, to: samples.count, by: max(1, samples.count / 12)).map { index in
            [String(format: "%.0f", samples[index].0), String(samples[index].1), String(samples[index].2)]
        })
        lab.evidence(["SUSTAINED/S", "OFFERED/S", "PLACED/S", "PLACED", "REFUSED OR FAILED REQUESTS", "PEAK LAG", "PEAK OUTBOX", "PENDING AT END", "P99 PLACED→END"], [[
            String(format: "%.0f", sustained), String(format: "%.0f", rate), String(format: "%.0f", summary.placedPerSecond),
            String(summary.placed), String(summary.httpErrors),
            String(peakLag), String(peakOutbox), String(summary.pending), String(format: "%.0f ms", summary.latencyMilliseconds["p99"] ?? 0),
        ]])
        return .check(summary.httpErrors == 0 && summary.pending == 0 && peakLag + Int64(peakOutbox) > 0 && drained,
                      shown: "all \(summary.placed) requests accepted; the backlog peaked at \(peakLag) messages of lag and \(peakOutbox) outbox rows and drained to 0",
                      otherwise: "\(summary.httpErrors) requests failed, \(summary.pending) orders pending, backlog \(drained ? "drained" : "not drained")")
    }
}

/// Kill -9 again and again: Kafka would redeliver, copies get republished, yet every effect happens once.
struct ExactlyOnceEffects: Experiment {
    let name = "exactly-once"
    let claim = "kill -9 between a service's database commit and its offset commit: Kafka redelivers, yet no order is charged, reserved or emailed twice"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop()
        let shop = lab.shop
        lab.step("placing orders at 30/s for 20 s; every 2.5 s or so a consumer is paused for a second, then killed with kill -9 while its outbox has rows in flight")
        async let load = shop.generate(orders: 600, seed: lab.seed, rate: 30)
        var behind: Int64 = 0
        var kills = 0
        let victims = ["payment-service", "inventory-service", "notification-service"]
        for round in 0..<8 {
            try await Task.sleep(for: .seconds(1))
            guard let victim = shop.instances.first(where: { $0.service == victims[round % victims.count] }) else { continue }
            // Paused for a second (as a long GC pause or a stalled disk would pause it), the victim finds its input
            // piled up in Kafka when it resumes: it applies it as one larger batch and publishes what that caused,
            // which keeps the window between the commits this experiment is about open for more than a moment.
            kill(victim.pid, SIGSTOP)
            try await Task.sleep(for: .seconds(1))
            kill(victim.pid, SIGCONT)
            // Aim the kill at a moment with work in flight: rows in its outbox mean a batch was just applied and
            // its events are being published.
            let aimed = ContinuousClock.now + .seconds(1)
            while ContinuousClock.now < aimed, (await shop.status(of: victim)?.outboxDepth ?? 0) == 0 {
                try await Task.sleep(for: .milliseconds(5))
            }
            shop.stop(victim, signal: SIGKILL)
            kills += 1
            // What the dead member had applied (its database) beyond what it had committed to Kafka: Kafka hands
            // exactly these to whoever owns the partition next.
            behind += try await uncommittedButApplied(victim.service, lab: lab)
            try await shop.startInstance(of: victim.service)
        }
        let summary = try await load
        lab.step("the generator is done; waiting for the shop to come to rest")
        try await shop.waitUntilAtRest()
        var copies = 0
        for topic in [Topic.orders, .payments, .inventory, .notifications] {
            let ids = try await lab.read(topic.name).compactMap { $0.header(Wire.Header.eventId) }
            copies += ids.count - Set(ids).count
        }
        let skipped = await duplicatesSkipped(lab)
        let audit = try await shop.audit()
        lab.evidence(["KILLS", "APPLIED BUT NOT COMMITTED AT A KILL", "COPIES REPUBLISHED", "REDELIVERIES SKIPPED BY SURVIVORS", "ORDERS", "PENDING", "AUDIT"], [[
            String(kills), String(behind), String(copies), String(skipped), String(summary.placed), String(summary.pending), audit.clean ? "clean" : "violations",
        ]])
        lab.say("    the audit checks each order charged, reserved, released and emailed at most once; its output:")
        for line in audit.output.split(separator: "\n") where line.hasPrefix("✔") || line.hasPrefix("✘") { lab.say("      " + line) }
        guard audit.clean && summary.pending == 0 else {
            return .notShown("after \(kills) kills the audit is \(audit.clean ? "clean" : "not clean") and \(summary.pending) orders are pending")
        }
        return .check(behind + Int64(copies) + Int64(skipped) > 0,
                      shown: "\(kills) kills left \(behind) messages applied but not committed and \(copies) republished copies; every effect still happened once",
                      otherwise: "no kill landed between a commit to the database and the one to Kafka, so nothing was redelivered: run it again")
    }

    /// Per partition, the stored next offset in the service's database minus the group's offset committed to Kafka.
    private func uncommittedButApplied(_ service: String, lab: Lab) async throws -> Int64 {
        let stored = try await AuditCommand.open(lab.shop.databasePath(of: service)).read { db in
            try Row.fetchAll(db, sql: "SELECT topic, partition, nextOffset FROM consumerOffset WHERE groupId = ?", arguments: [service])
                .map { (TopicPartition($0["topic"], $0["partition"]), $0["nextOffset"] as Int64) }
        }
        let committed = try await KafkaAdmin(configuration: try lab.kafka()).committedOffsets(group: service, partitions: stored.map(\.0))
        return stored.reduce(0) { $0 + max(0, $1.1 - (committed[$1.0] ?? 0)) }
    }

    /// Redelivered events the instances running now recognised as applied (those killed took their counts along).
    private func duplicatesSkipped(_ lab: Lab) async -> Int {
        var sum = 0
        for service in ShopLayout.services {
            sum += await lab.handled(by: service).values.reduce(0) { $0 + $1.duplicates }
        }
        return sum
    }
}

/// Poison goes aside with its reason instead of stopping the shop; a failure whose cause is fixed is re-driven.
struct DeadLetters: Experiment {
    let name = "dead-letters"
    let claim = "a poison message goes to the dead-letter topic with its reason while later orders complete; once its cause is fixed, a replay re-drives it"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop()
        lab.step("producing a message that is not an event to orders")
        let producer = try KafkaProducer(configuration: try lab.kafka())
        _ = try await producer.send(OutgoingMessage(topic: Topic.orders.name, key: "customer-1", value: Array("this is not an event".utf8)))
        await producer.close()

        // Beyond the generator's customer-1 … customer-100, so that only this one order meets the trigger.
        let customer = (101...2000).map { "customer-\($0)" }.first { !CreditPolicy.standard.isLowLimit($0) }!
        lab.step("making payment-service's database refuse \(customer)'s payments (the cause of a handler failure)")
        let payments = try DatabaseQueue(path: lab.shop.databasePath(of: "payment-service"), configuration: {
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            return configuration
        }())
        try await payments.write { db in
            try db.execute(sql: """
                CREATE TRIGGER refusePayments BEFORE INSERT ON payment WHEN NEW.customerId = '\(customer)'
                BEGIN SELECT RAISE(ABORT, 'this customer''s payments cannot be written'); END
                """)
        }
        let stuck = try await place(customer: customer, lab: lab)
        lab.step("placed \(stuck) for \(customer); placing 40 more orders")
        let later = try await lab.shop.generate(orders: 40, seed: lab.seed)
        try await lab.shop.waitFor("four dead letters", seconds: 60) { try await lab.read("orders.dlq").count >= 4 }
        let letters = try await lab.read("orders.dlq")
        lab.evidence(["DLQ PARTITION@OFFSET", "KEY", "DEAD-LETTERED BY", "REASON"], letters.map { letter in
            ["\(letter.partition)@\(letter.offset)", letter.keyString ?? "-", DeadLetter.added(DeadLetter.Header.group, to: letter) ?? "?", String((DeadLetter.added(DeadLetter.Header.reason, to: letter) ?? "").prefix(70))]
        })
        let statusBefore = try await orderStatus(stuck, lab: lab)
        lab.step("\(later.placed - later.pending) of the 40 later orders ended; \(stuck) is \(statusBefore)")

        lab.step("fixing the cause (dropping the trigger) and running emporium dlq replay orders")
        try await payments.write { db in try db.execute(sql: "DROP TRIGGER refusePayments") }
        let replay = try await lab.shop.emporium(["dlq", "replay", "orders"], log: "dlq-replay")
        lab.say("    " + (replay.output.split(separator: "\n").last(where: { $0.contains("replayed") }).map(String.init) ?? replay.output))
        var statusAfter = statusBefore
        try await lab.shop.waitFor("\(stuck) to end", seconds: 60) {
            statusAfter = try await orderStatus(stuck, lab: lab)
            return statusAfter != "pending"
        }
        lab.step("\(stuck) is now \(statusAfter)")
        let poisonLetters = letters.filter { (DeadLetter.added(DeadLetter.Header.reason, to: $0) ?? "").contains("event-type header is missing") }.count
        return .check(poisonLetters == 3 && later.pending == 0 && statusBefore == "pending" && statusAfter == "confirmed",
                      shown: "the poison was dead-lettered by each of 3 groups with its reason, the 40 later orders ended, and the replayed order was confirmed after the fix",
                      otherwise: "poison dead letters \(poisonLetters) of 3, later orders pending \(later.pending), the stuck order went \(statusBefore) → \(statusAfter)")
    }

    private func place(customer: String, lab: Lab) async throws -> String {
        let order = try lab.shop.instance(of: "order-service")
        var request = HTTPClientRequest(url: order.url + "/orders")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"customerId":"\#(customer)","lines":[{"productId":"product-1","quantity":1}]}"#))
        let response = try await lab.shop.http.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        struct Placed: Decodable { let orderId: String }
        return try JSONDecoder().decode(Placed.self, from: Data(body.readableBytesView)).orderId
    }

    private func orderStatus(_ orderId: String, lab: Lab) async throws -> String {
        let order = try lab.shop.instance(of: "order-service")
        struct Order: Decodable { let status: String }
        let answer: Order = try await lab.shop.get(order.url + "/orders/\(orderId)")
        return answer.status
    }
}
