import Catalogue
import Foundation
import GRDB
import Testing

/// The shop under faults while orders keep coming: services killed with `kill -9`, a broker taken off the
/// network. Each ends with the audit clean and prints the placed-to-terminal figures.
@Suite(.serialized) struct ChaosTests {
    /// The generator's summary, from its last line.
    private func summary(of generator: ChildProcess) -> [String: Any] {
        json(generator.output.split(separator: "\n").last.map(String.init) ?? "")
    }

    /// The scenario's load: 30 orders/s for 30 s by default, which the debug build the suite runs keeps up with.
    /// `EMPORIUM_CHAOS_RATE=250` with `EMPORIUM_BIN_DIR` on a release build runs it at the rate the figures in
    /// docs/runtime.md were taken at.
    private let rate = Int(ProcessInfo.processInfo.environment["EMPORIUM_CHAOS_RATE"] ?? "") ?? 30
    private var orders: Int { rate * 30 }

    /// Starts placing orders (each one recorded in `generate.csv`) and returns once they flow. The scenarios are
    /// about a shop in its stride, so the load starts once every service owns its partitions: a group's first
    /// join on the embedded cluster takes 3 s, and a kill before it ends would be a kill of a shop still starting.
    private func startGenerator(_ shop: Shop, seed: Int) async throws -> ChildProcess {
        for service in Shop.services {
            try await waitUntil(.seconds(60), "\(service) owns its partitions") {
                ((json(try get(shop.url(of: service) + "/status").text)["partitions"] as? [Any])?.count ?? 0) > 0
            }
        }
        let generator = try ChildProcess(
            Executables.url("emporium"),
            ["generate", "--url", shop.orderURL, "--orders", String(orders), "--rate", String(rate), "--customers", "100",
             "--products", "200", "--seed", String(seed), "--json", "--record", shop.varDir.appendingPathComponent("generate.csv").path,
             "--var-dir", shop.varDir.path],
            log: shop.varDir.appendingPathComponent("generate.log"))
        try await waitUntil(.seconds(60), "orders flowing") {
            try await shop.database("order-service").read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM customerOrder") ?? 0 } > 2 * rate
        }
        return generator
    }

    /// From `generate.csv`: each order's placement and end, in Unix milliseconds.
    private func recordedOrders(_ shop: Shop) throws -> [(placed: Int64, ended: Int64?)] {
        let text = try String(contentsOf: shop.varDir.appendingPathComponent("generate.csv"), encoding: .utf8)
        return text.split(separator: "\n").dropFirst().map { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            return (Int64(fields[1]) ?? 0, Int64(fields[2]))
        }
    }

    /// Starts a new payment-service process and waits until its `/status` says it owns all 12 partitions; returns
    /// the process and the seconds from `since` until then.
    private func startPaymentServiceUntilItOwnsEveryPartition(_ shop: Shop, since: ContinuousClock.Instant) async throws -> (ChildProcess, Double) {
        try shop.start("payment-service", instance: 1)
        let process = shop.instances(of: "payment-service")[0]
        try await waitUntil(.seconds(60), "the new payment-service process owns every partition") {
            let answer = try json(get(shop.url(of: "payment-service") + "/status").text)
            return answer["pid"] as? Int == Int(process.pid) && (answer["partitions"] as? [Any])?.count == 12
        }
        let took = ContinuousClock.now - since
        return (process, Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18)
    }

    private func latency(_ summary: [String: Any]) -> (p50: Double, p99: Double, max: Double) {
        let figures = summary["latencyMilliseconds"] as? [String: Double] ?? [:]
        return (figures["p50"] ?? .infinity, figures["p99"] ?? .infinity, figures["max"] ?? .infinity)
    }

    /// A random service (seeded) killed with `kill -9` every 2 s for 10 s and restarted at once, under a steady
    /// load: nothing lost, nothing applied twice, no request lost. On the embedded cluster a kill stops a service's
    /// partitions for about 2.6 s (its restart takes the dead member out of the group, then a rebalance); a process
    /// killed again before its own join is answered (the second payment-service kill here) is taken out as the
    /// group's leader by the next one. The slowest order took 9.4 to 10.8 s in the runs docs/runtime.md lists
    /// before that, 5.5 to 5.9 s since; the 45 s ceiling catches a regression, and the figures are printed.
    @Test func aServiceKilledEveryTwoSecondsLosesNothingAndEveryOrderEnds() async throws {
        let shop = try await Shop()
        let generator = try await startGenerator(shop, seed: 21)
        // Seeded so that every service is killed once, order-service first (a request caught by its death is
        // retried; most just wait for a connection), and payment-service twice in a row: order, inventory,
        // payment, payment, notification.
        var random = SeededRandom(seed: 28)
        var killed: [String] = []
        let start = ContinuousClock.now
        for round in 0..<5 {
            // The scenario's own pace (one kill every 2 s), not a wait for something to happen.
            try await Task.sleep(until: start + .seconds(2 * round), clock: .continuous)
            let service = Shop.services[Int(random.next() % UInt64(Shop.services.count))]
            shop.instances(of: service)[0].stop(signal: SIGKILL)
            try shop.start(service, instance: 1)
            killed.append(service)
        }
        try await waitUntil(.seconds(240), "the generator finishes") { !generator.isRunning }
        #expect(generator.stop() == 0, "generator: \(generator.output.suffix(2_000))")
        let figures = summary(of: generator)
        let (p50, p99, max) = latency(figures)
        print("kill -9 every 2 s (\(killed.joined(separator: ", "))): placed \(figures["placed"] ?? "?"), retries \(figures["retries"] ?? "?"), "
            + "placed→terminal p50 \(Int(p50)) ms, p99 \(Int(p99)) ms, max \(Int(max)) ms")
        #expect(figures["placed"] as? Int == orders && figures["httpErrors"] as? Int == 0 && figures["pending"] as? Int == 0, "\(figures)")
        #expect(max <= 45_000, "the slowest order took \(Int(max)) ms")
        try expectCleanAudit(shop, agreeingWith: figures)
        shop.stop()
    }

    /// A storm: a random service (seeded) killed with `kill -9` and restarted every second for 30 s, and broker 2
    /// off the network for 4 s in the middle, under a steady load. Nothing may be lost or doubled. The figures
    /// (the slowest order, and for each group how long it owned less than all its partitions, polled every
    /// half second from outside) are printed: issue 31 aims at a slowest order of 8 s, which the shop does not
    /// reach yet (docs/runtime.md); the ceiling here catches a regression.
    @Test func aStormOfKillsWithABrokerDownInTheMiddleLosesNothingAndEveryOrderEnds() async throws {
        let shop = try await Shop()
        let generator = try await startGenerator(shop, seed: 26)
        let partitions = ["order-service": 36, "payment-service": 12, "inventory-service": 12, "notification-service": 12]
        let watch = Task { () -> [String: Double] in
            var short: [String: Double] = [:]
            while !Task.isCancelled {
                for (service, expected) in partitions {
                    let owned = (try? json(get("\(shop.url(of: service))/status").text)["partitions"] as? [Any])??.count ?? 0
                    if owned < expected { short[service, default: 0] += 0.5 }
                }
                try? await Task.sleep(for: .milliseconds(500))
            }
            return short
        }
        var random = SeededRandom(seed: 29)
        var killed: [String: Int] = [:]
        let start = ContinuousClock.now
        for second in 0..<30 {
            // The storm's own pace (a kill a second, the broker away from 12 s to 16 s), not a wait for something.
            try await Task.sleep(until: start + .seconds(second), clock: .continuous)
            if second == 12 { #expect(try shop.emporium(["cluster", "broker", "2", "down"]).status == 0) }
            if second == 16 { #expect(try shop.emporium(["cluster", "broker", "2", "up"]).status == 0) }
            let service = Shop.services[Int(random.next() % UInt64(Shop.services.count))]
            shop.instances(of: service)[0].stop(signal: SIGKILL)
            try shop.start(service, instance: 1)
            killed[service, default: 0] += 1
        }
        try await waitUntil(.seconds(300), "the generator finishes") { !generator.isRunning }
        watch.cancel()
        let short = await watch.value
        #expect(generator.stop() == 0, "generator: \(generator.output.suffix(2_000))")
        let figures = summary(of: generator)
        let (p50, p99, max) = latency(figures)
        print("storm of 30 kills in 30 s (\(killed.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))) and broker 2 down 4 s: "
            + "placed \(figures["placed"] ?? "?"), retries \(figures["retries"] ?? "?"), placed→terminal p50 \(Int(p50)) ms, p99 \(Int(p99)) ms, max \(Int(max)) ms; "
            + "seconds owning less than every partition: \(short.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
        #expect(figures["placed"] as? Int == orders && figures["httpErrors"] as? Int == 0 && figures["pending"] as? Int == 0, "\(figures)")
        #expect(max <= 90_000, "the slowest order took \(Int(max)) ms")
        try expectCleanAudit(shop, agreeingWith: figures)
        shop.stop()
    }

    /// A service killed and restarted at once: the new process takes its dead predecessor's member out of the
    /// group before it joins, so the group does not wait for the dead member's session to end. The embedded
    /// cluster ignores static membership, and without this the partitions were owned again only after about
    /// 6.5 s (the dead member's 3.5 s session, checked once a second, then a rebalance of 2.5 s); the figure
    /// is printed.
    @Test func aRestartedServiceTakesItsKilledPredecessorOutOfTheGroup() async throws {
        let shop = try await Shop()
        let status = { try json(get(shop.url(of: "payment-service") + "/status").text) }
        var member: String?
        try await waitUntil(.seconds(60), "payment-service owns every partition") {
            let answer = try status()
            member = answer["memberId"] as? String
            return (answer["partitions"] as? [Any])?.count == 12 && member != nil
        }
        let killedAt = ContinuousClock.now
        shop.instances(of: "payment-service")[0].stop(signal: SIGKILL)
        let (restarted, ownedAgain) = try await startPaymentServiceUntilItOwnsEveryPartition(shop, since: killedAt)
        print(String(format: "payment-service killed and restarted: its partitions owned again after %.1f s", ownedAgain))
        #expect(restarted.output.contains("took member \(member ?? "?") of payment-service-1"), "\(restarted.output.suffix(3_000))")
        shop.stop()
    }

    /// A service killed, and its restarted process killed again 2 s later, before its own join was answered (the
    /// kill scenario's second payment-service kill). That process never learnt its member ID, yet the embedded
    /// cluster keeps the member and, since it joined first, elects it leader, so the third process waited in
    /// SyncGroup for the dead leader's assignment and then for a rebalance: its partitions were owned again about
    /// 6.8 s after it started. The third process now hears from its join answer who the leader is, sees that no
    /// other instance is alive, and takes that member out at once; the figure is printed.
    @Test func aRestartKilledBeforeItsJoinWasAnsweredIsTakenOutAsTheGroupsLeader() async throws {
        let shop = try await Shop()
        let status = { try json(get(shop.url(of: "payment-service") + "/status").text) }
        try await waitUntil(.seconds(60), "payment-service owns every partition") {
            (try status()["partitions"] as? [Any])?.count == 12
        }
        shop.instances(of: "payment-service")[0].stop(signal: SIGKILL)
        let firstKill = ContinuousClock.now
        try shop.start("payment-service", instance: 1)
        let second = shop.instances(of: "payment-service")[0]
        try await waitUntil(.seconds(60), "the second process answers") { try status()["pid"] as? Int == Int(second.pid) }
        // The scenario's own pace (2 s between kills), not a wait for something to happen. The join of the second
        // process is answered only 2.5 s after it took the first one's member out (the mock's rebalance delay).
        try await Task.sleep(until: firstKill + .seconds(2), clock: .continuous)
        #expect((try status()["memberId"] as? String) == nil, "the second process's join was answered already: the scenario did not happen")
        second.stop(signal: SIGKILL)
        let (third, ownedAgain) = try await startPaymentServiceUntilItOwnsEveryPartition(shop, since: .now)
        print(String(format: "payment-service killed twice 2 s apart: its partitions owned again %.1f s after the second kill", ownedAgain))
        #expect(third.output.contains("took the elected leader"), "\(third.output.suffix(3_000))")
        shop.stop()
    }

    /// One broker off the network for 10 s under load, then back: nothing lost, nothing duplicated. The mock
    /// elects no new leader, and members whose coordinator is that broker time out of their group, so the
    /// slowest order took 15 to 25 s from its placement in the runs docs/runtime.md lists, 10 s of it the
    /// outage. The 45 s ceiling catches a regression; the figures are printed, with how long after the broker
    /// came back the orders it caught had all ended.
    @Test func aBrokerDownForTenSecondsLosesNothingAndTheShopCatchesUp() async throws {
        let shop = try await Shop()
        let generator = try await startGenerator(shop, seed: 22)
        let down = try shop.emporium(["cluster", "broker", "2", "down"])
        #expect(down.status == 0, "\(down.output)")
        let wentDown = ContinuousClock.now
        try await Task.sleep(until: wentDown + .seconds(10), clock: .continuous)
        let up = try shop.emporium(["cluster", "broker", "2", "up"])
        #expect(up.status == 0, "\(up.output)")
        let cameBack = Int64(Date().timeIntervalSince1970 * 1000)

        try await waitUntil(.seconds(240), "the generator finishes") { !generator.isRunning }
        #expect(generator.stop() == 0, "generator: \(generator.output.suffix(2_000))")
        let figures = summary(of: generator)
        let (p50, p99, max) = latency(figures)
        // The orders the outage caught: placed before the broker came back. The last of them to end says how long
        // the shop took to catch up once the broker returned.
        let caught = try recordedOrders(shop).filter { $0.placed < cameBack }
        // The recorded times are wall-clock times, as is `cameBack`; a step of the machine's clock in between
        // (a virtual machine's clock set from its host) leaves nothing to compare, which is said rather than hidden.
        let catchUp = if caught.isEmpty {
            "no order is recorded as placed before the broker returned, so the catch-up is not known (did the wall clock step?)"
        } else {
            "the \(caught.count) orders placed before the broker returned had all ended "
                + "\((caught.compactMap(\.ended).max() ?? cameBack) - cameBack) ms after it returned"
        }
        print("broker 2 down for 10 s: placed \(figures["placed"] ?? "?"), retries \(figures["retries"] ?? "?"), "
            + "placed→terminal p50 \(Int(p50)) ms, p99 \(Int(p99)) ms, max \(Int(max)) ms; \(catchUp)")
        #expect(caught.count == caught.compactMap(\.ended).count, "an order placed before the broker returned never ended")
        #expect(figures["placed"] as? Int == orders && figures["httpErrors"] as? Int == 0 && figures["pending"] as? Int == 0, "\(figures)")
        #expect(max <= 45_000, "the slowest order took \(Int(max)) ms")
        try expectCleanAudit(shop, agreeingWith: figures)
        shop.stop()
    }

    /// The whole cluster gone under load (its process stopped), then SIGTERM to every service: each still stops
    /// and exits 0. librdkafka's blocking consumer close waited for ever for a coordinator it could not reach,
    /// so a service stopped this way hung until killed; the consumer now gives leaving its group 10 s.
    @Test func everyServiceStopsOnSIGTERMAfterTheClusterIsGone() async throws {
        let shop = try await Shop()
        let generator = try await startGenerator(shop, seed: 24)
        shop.cluster.stop(signal: SIGTERM)
        // Stopped once their sessions have lapsed and each consumer has given up its partitions, as happens when
        // the cluster stays away: that is when the blocking close had no end.
        try await waitUntil(.seconds(60), "every service has lost its partitions") {
            try Shop.services.allSatisfy { service in
                (json(try get("\(shop.url(of: service))/status").text)["partitions"] as? [Any])?.isEmpty == true
            }
        }
        expectEveryServiceStopsOnSIGTERM(shop, generator: generator)
    }

    /// The same, SIGTERM as the cluster goes, while every consumer still holds its partitions: the
    /// commit that goes with giving them up waited for ever in librdkafka's synchronous commit, and in three
    /// runs of three one service or two never exited. That commit now waits 5 s at most.
    @Test func everyServiceStopsOnSIGTERMAsTheClusterGoes() async throws {
        let shop = try await Shop()
        let generator = try await startGenerator(shop, seed: 25)
        kill(shop.cluster.pid, SIGTERM)
        expectEveryServiceStopsOnSIGTERM(shop, generator: generator)
    }

    private func expectEveryServiceStopsOnSIGTERM(_ shop: Shop, generator: ChildProcess) {
        let services = Shop.services.map { shop.instances(of: $0)[0] }
        for service in services { kill(service.pid, SIGTERM) }
        let statuses = services.map { $0.stop(signal: SIGTERM, grace: .seconds(40)) }
        generator.stop(signal: SIGKILL)
        print("with the cluster gone, SIGTERM: exit statuses \(statuses)")
        #expect(statuses == [0, 0, 0, 0], "exit statuses \(Dictionary(uniqueKeysWithValues: zip(Shop.services, statuses)))")
        shop.stop()
    }

    /// payment-service loses its database and comes back on a copy taken mid-run: it resumes where the copy
    /// stands (its positions live in the database), re-reads what it lost from Kafka and re-publishes identical
    /// events; every order ends as before and the audit is clean.
    @Test func aPaymentDatabaseRestoredFromACopyTakenMidRunCatchesUpFromKafka() async throws {
        let shop = try await Shop()
        let generator = try ChildProcess(
            Executables.url("emporium"),
            ["generate", "--url", shop.orderURL, "--orders", "600", "--rate", "40", "--customers", "100", "--products", "200",
             "--seed", "23", "--json", "--var-dir", shop.varDir.path],
            log: shop.varDir.appendingPathComponent("generate.log"))
        try await waitUntil(.seconds(60), "payments under way") {
            try await shop.database("payment-service").read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM payment") ?? 0 } > 150
        }
        let copy = shop.varDir.appendingPathComponent("payment-copy.sqlite").path
        try shop.database("payment-service").backup(to: try DatabaseQueue(path: copy))
        let copied = try await DatabaseQueue(path: copy).read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM payment") ?? 0 }
        try await waitUntil(.seconds(240), "the generator finishes") { !generator.isRunning }
        #expect(generator.stop() == 0, "generator: \(generator.output.suffix(2_000))")
        let figures = summary(of: generator)

        shop.instances(of: "payment-service")[0].stop(signal: SIGKILL)
        let database = shop.varDir.appendingPathComponent("db/payment-service.sqlite").path
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
        try FileManager.default.copyItem(atPath: copy, toPath: database)
        try shop.start("payment-service", instance: 1)
        try await shop.waitUntilHealthy("payment-service", instance: 1)
        try await waitUntil(.seconds(120), "payment-service catches up") {
            try await shop.database("payment-service").read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM payment") ?? 0 } == 600
        }
        print("payment-service restored from a copy with \(copied) of 600 payments; caught up to 600")
        #expect(copied < 600, "the copy was taken after the run")
        try expectCleanAudit(shop, agreeingWith: figures)
        shop.stop()
    }
}
