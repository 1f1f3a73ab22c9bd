import DomainEvents
import Foundation
import Kafka
import ServiceRuntime

/// Three members of one group split the partitions, and each processes exactly what its partitions hold.
struct LoadBalancing: Experiment {
    let name = "load-balancing"
    let claim = "a consumer group splits a topic's partitions among its members, and each member processes only its own partitions' messages"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop(["payment-service": 3])
        lab.step("waiting until the three payment-service members own every partition of orders once")
        let assignment = try await lab.settledAssignment(of: "payment-service")
        let summary = try await lab.place(300)
        let offsets = try await KafkaAdmin(configuration: try lab.kafka()).offsets(of: [Topic.orders.name])
        let inPartition = Dictionary(uniqueKeysWithValues: offsets.map { ($0.partition, $0.high - $0.low) })
        let handled = await lab.handled(by: "payment-service")
        var rows: [[String]] = []
        var matches = true
        for (instance, partitions) in assignment.sorted(by: { $0.key < $1.key }) {
            let expected = partitions.reduce(Int64(0)) { $0 + (inPartition[$1] ?? 0) }
            let processed = handled[instance]?.messages ?? -1
            matches = matches && Int64(processed) == expected && !partitions.isEmpty
            rows.append([instance, partitions.partitionList, String(expected), String(processed)])
        }
        lab.evidence(["INSTANCE", "OWNS", "MESSAGES IN ITS PARTITIONS", "MESSAGES IT PROCESSED"], rows)
        return .check(matches && summary.pending == 0,
                      shown: "each of the three members owns its own partitions and processed exactly the \(offsets.reduce(0) { $0 + $1.high }) messages between them once",
                      otherwise: "the split does not follow the assignment (or \(summary.pending) orders did not end)")
    }
}

/// A member killed with `kill -9`: the group notices, hands its partitions to the others, and nothing is lost.
struct Failover: Experiment {
    let name = "failover"
    let claim = "when a member dies, the group gives its partitions to the survivors within seconds and no order is lost"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop(["payment-service": 3])
        let before = try await lab.settledAssignment(of: "payment-service")
        lab.step("placing orders at 40/s for 20 s")
        let shop = lab.shop
        async let load = shop.generate(orders: 800, seed: lab.seed, rate: 40)
        try await Task.sleep(for: .seconds(5))
        let victim = try shop.instance(of: "payment-service")
        let orphaned = before[victim.name] ?? []
        lab.step("kill -9 \(victim.name) (pid \(victim.pid)), which owns \(orphaned.partitionList)")
        let killedAt = ContinuousClock.now
        shop.stop(victim, signal: SIGKILL)
        var takenOverAfter: Duration?
        try await shop.waitFor("its partitions owned again", seconds: 45) {
            var owned: Set<TopicPartition> = []
            for instance in shop.instances where instance.service == "payment-service" {
                owned.formUnion(await shop.status(of: instance)?.partitions.map { TopicPartition($0.topic, $0.partition) } ?? [])
            }
            if Set(orphaned).isSubset(of: owned) { takenOverAfter = .now - killedAt }
            return takenOverAfter != nil
        }
        lab.step(String(format: "its partitions are owned again after %.1f s", takenOverAfter!.seconds))
        let after = try await lab.settledAssignment(of: "payment-service")
        let summary = try await load
        lab.step("the generator is done; waiting for the shop to come to rest and auditing")
        try await shop.waitUntilAtRest()
        let audit = try await shop.audit()
        lab.evidence(["INSTANCE", "OWNED BEFORE", "OWNS AFTER"], (before.keys.sorted()).map { instance in
            [instance + (instance == victim.name ? " (killed)" : ""), before[instance]!.partitionList, after[instance]?.partitionList ?? "-"]
        })
        lab.evidence(["ORPHANED PARTITIONS OWNED AGAIN AFTER", "ORDERS PLACED", "STILL PENDING", "FAILED REQUESTS", "AUDIT"], [[
            String(format: "%.1f s", takenOverAfter!.seconds), String(summary.placed), String(summary.pending), String(summary.httpErrors),
            audit.clean ? "clean" : "violations",
        ]])
        return .check(audit.clean && summary.pending == 0 && summary.httpErrors == 0,
                      shown: String(format: "the survivors took over %d partitions %.1f s after the kill; all %d orders ended and the audit is clean",
                                    orphaned.count, takenOverAfter!.seconds, summary.placed),
                      otherwise: "after the kill \(summary.pending) orders stayed pending, \(summary.httpErrors) requests failed, audit \(audit.clean ? "clean" : "not clean")")
    }
}

/// A group cannot use more members than partitions: the thirteenth gets nothing.
struct ScaleLimit: Experiment {
    let name = "scale-limit"
    let claim = "a group's parallelism is bounded by the partition count: of 13 members on 12 partitions, one owns nothing and processes nothing"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop(["notification-service": 13])
        lab.step("waiting until the 13 members own the 12 partitions of orders between them")
        let assignment = try await lab.settledAssignment(of: "notification-service", seconds: 90)
        try await lab.place(100)
        let handled = await lab.handled(by: "notification-service")
        let rows = assignment.keys.sorted { $0.localizedStandardCompare($1) == .orderedAscending }.map { instance in
            [instance, String(assignment[instance]!.count), assignment[instance]!.partitionList, String(handled[instance]?.messages ?? -1)]
        }
        lab.evidence(["INSTANCE", "PARTITIONS", "OWNS", "MESSAGES PROCESSED"], rows)
        let idle = assignment.filter { $0.value.isEmpty }.map(\.key)
        let idleProcessedNothing = idle.allSatisfy { handled[$0]?.messages == 0 }
        return .check(idle.count == 1 && idleProcessedNothing,
                      shown: "\(idle[0]) owns no partition and processed no message: a 13th member only waits to take over",
                      otherwise: "\(idle.count) members own nothing (expected 1)")
    }
}

/// Groups are independent readers: each group gets every message, and inside a group each message goes to one member.
struct FanOut: Experiment {
    let name = "fan-out"
    let claim = "every consumer group on a topic receives every message; within one group, each message goes to one member"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop(["payment-service": 2])
        _ = try await lab.settledAssignment(of: "payment-service")
        let summary = try await lab.place(200)
        let total = try await lab.messages(in: .orders)
        var rows: [[String]] = []
        var everyGroupGotAll = true
        for service in ["payment-service", "inventory-service", "notification-service"] {
            let handled = await lab.handled(by: service)
            let sum = handled.values.reduce(0) { $0 + $1.messages }
            everyGroupGotAll = everyGroupGotAll && Int64(sum) == total
            rows.append([service, String(handled.count), handled.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.messages)" }.joined(separator: ", "), String(sum)])
        }
        lab.step("reading orders from the beginning as a fourth group, made for the purpose")
        let extra = try await lab.read(Topic.orders.name).count
        everyGroupGotAll = everyGroupGotAll && Int64(extra) == total
        rows.append(["a fresh group", "1", "this command \(extra)", String(extra)])
        lab.evidence(["GROUP", "MEMBERS", "MESSAGES PER MEMBER", "GROUP TOTAL"], rows)
        lab.say("    messages in orders: \(total)")
        let payment = await lab.handled(by: "payment-service")
        let split = payment.values.allSatisfy { $0.messages > 0 && Int64($0.messages) < total }
        return .check(everyGroupGotAll && split && summary.pending == 0,
                      shown: "each of four groups read all \(total) messages of orders; payment-service's two members split them with no message read twice",
                      otherwise: "a group's total differs from the \(total) messages in orders, or one member read everything")
    }
}

/// Committed offsets are a group's bookmark: a restarted member resumes after them, not at the beginning.
struct Offsets: Experiment {
    let name = "offsets"
    let claim = "a restarted consumer resumes at its group's committed offsets and processes only what came after"

    func run(_ lab: Lab) async throws -> Verdict {
        try await lab.startShop()
        try await lab.place(100)
        let member = try lab.shop.instance(of: "notification-service")
        lab.step("stopping \(member.name) (SIGTERM: it commits and leaves the group)")
        lab.shop.stop(member)
        let committedBefore = try await lab.group(of: "notification-service").partitions.reduce(Int64(0)) { $0 + ($1.committed ?? 0) }
        try await lab.place(60, seedOffset: 1, "while notification-service is stopped")
        let endAtRestart = try await lab.messages(in: .orders)
        lab.step("starting a new notification-service instance")
        try await lab.shop.startInstance(of: "notification-service")
        try await lab.shop.waitUntilAtRest()
        let committedAfter = try await lab.group(of: "notification-service").partitions.reduce(Int64(0)) { $0 + ($1.committed ?? 0) }
        let handled = await lab.handled(by: "notification-service").values.first ?? HandledCounts()
        let expected = endAtRestart - committedBefore
        lab.evidence(["", "MESSAGES"], [
            ["committed by the group when it stopped (sum over partitions)", String(committedBefore)],
            ["in orders when the new instance started", String(endAtRestart)],
            ["processed by the new instance", String(handled.messages)],
            ["  of them already applied (redelivered)", String(handled.duplicates)],
            ["committed by the group now", String(committedAfter)],
        ])
        return .check(Int64(handled.messages) == expected && handled.duplicates == 0 && committedAfter == endAtRestart,
                      shown: "the new instance processed the \(expected) messages after the committed offsets, not the \(endAtRestart) from the beginning",
                      otherwise: "the new instance processed \(handled.messages) messages; the \(expected) after the committed offsets were expected")
    }
}
