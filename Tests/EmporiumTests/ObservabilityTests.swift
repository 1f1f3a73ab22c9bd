import Foundation
import Kafka
import Testing

/// Watching the shop: each service's `/metrics`, `emporium status`, and the console in a real browser.
@Suite(.serialized) struct ObservabilityTests {
    /// Every sample of a service's `/metrics`, parsed by Prometheus's own Python parser: "name{labels}" → value.
    private func metrics(_ url: String) throws -> [String: Double] {
        let text = try get(url + "/metrics")
        #expect(text.code == 200)
        let parsed = try runPython("""
            import sys, json
            from prometheus_client.parser import text_string_to_metric_families
            samples = {}
            for family in text_string_to_metric_families(sys.stdin.read()):
                for s in family.samples:
                    labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                    samples[f"{s.name}{{{labels}}}"] = s.value
            print(json.dumps(samples))
            """, input: text.text)
        #expect(parsed.status == 0, "not Prometheus text format: \(parsed.output)")
        return (try? JSONSerialization.jsonObject(with: Data(parsed.output.utf8)) as? [String: Double]) ?? [:]
    }

    private func sum(_ samples: [String: Double], _ prefix: String) -> Double {
        samples.filter { $0.key.hasPrefix(prefix) }.values.reduce(0, +)
    }

    /// The event types on a topic, one per message, read with kcat.
    private func types(on topic: String, in shop: Shop) throws -> [String] {
        let read = try run("/usr/bin/kcat", ["-b", shop.bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%h\n"])
        return read.output.split(separator: "\n").compactMap { line in
            line.split(separator: ",").first { $0.hasPrefix("event-type=") }.map { String($0.dropFirst("event-type=".count)) }
        }
    }

    @Test func everyServiceExposesPrometheusMetricsThatAgreeWithTheTopics() async throws {
        let shop = try await Shop(partitions: 4)
        let run = try shop.generate(["--orders", "200", "--customers", "30", "--seed", "21", "--json"])
        #expect(run.status == 0, "\(run.output)")
        #expect(try shop.audit().status == 0)

        let order = try metrics(shop.url(of: "order-service"))
        let terminal = try types(on: "orders", in: shop).filter { $0 == "OrderConfirmed" || $0 == "OrderCancelled" }.count
        #expect(terminal == 200)
        #expect(sum(order, "emporium_orders_confirmed_total") + sum(order, "emporium_orders_cancelled_total") == Double(terminal))
        #expect(sum(order, "emporium_orders_placed_total") == 200)
        #expect(sum(order, "emporium_http_requests_total{method=\"POST\",route=\"/orders\",status=\"202\"}") == 200)

        let payment = try metrics(shop.url(of: "payment-service"))
        #expect(payment["emporium_events_consumed_total{outcome=\"applied\",topic=\"orders\",type=\"OrderPlaced\"}"] == 200)
        #expect(sum(payment, "emporium_payments_authorized_total") + sum(payment, "emporium_payments_declined_total") == 200)
        #expect(sum(payment, "emporium_event_age_seconds_count{topic=\"orders\"}") >= 200)
        #expect(payment["emporium_outbox_depth_rows{}"] == 0)

        let notification = try metrics(shop.url(of: "notification-service"))
        #expect(sum(notification, "emporium_emails_sent_total") == 200)
        let inventory = try metrics(shop.url(of: "inventory-service"))
        #expect(sum(inventory, "emporium_consumer_assigned_partitions") == 4)
        #expect(sum(inventory, "emporium_consumer_batch_transaction_duration_seconds_count") > 0)
        shop.stop()
    }

    @Test func statusShowsNoLagAfterARunAndAStoppedGroupsBacklogInTheKeysPartitions() async throws {
        let shop = try await Shop(partitions: 12)
        #expect(try shop.generate(["--orders", "100", "--customers", "40", "--seed", "22", "--json"]).status == 0)
        #expect(try shop.audit().status == 0)
        let settled = json(try shop.emporium(["status", "--json"]).output)
        let groups = try #require(settled["groups"] as? [[String: Any]])
        #expect(groups.count == 4)
        for group in groups {
            let partitions = group["partitions"] as? [[String: Any]] ?? []
            #expect(!partitions.isEmpty)
            #expect(partitions.allSatisfy { $0["lag"] as? Int == 0 }, "\(group["group"] ?? "?") lags")
            #expect(partitions.allSatisfy { $0["owner"] is String }, "every partition of \(group["group"] ?? "?") has an owner")
        }

        #expect(shop.instances(of: "payment-service")[0].stop(signal: SIGTERM) == 0)
        var expected: [Int32: Int] = [:]
        for n in 0..<60 {
            let customer = "customer-\(n % 25)"
            let placed = try post("\(shop.orderURL)/orders", "{\"customerId\":\"\(customer)\",\"lines\":[{\"productId\":\"product-1\",\"quantity\":1}]}")
            #expect(placed.code == 202)
            expected[Murmur2.partition(for: Array(customer.utf8), partitionCount: 12), default: 0] += 1
        }
        var lag: [Int32: Int] = [:]
        try await waitUntil(.seconds(30), "the backlog of payment-service's group to show") {
            let status = json(try shop.emporium(["status", "--json"]).output)
            let payment = (status["groups"] as? [[String: Any]])?.first { $0["group"] as? String == "payment-service" }
            lag = [:]
            for row in payment?["partitions"] as? [[String: Any]] ?? [] {
                lag[Int32(row["partition"] as? Int ?? -1)] = row["lag"] as? Int
            }
            return lag.filter { $0.value > 0 } == expected
        }
        #expect(lag.values.reduce(0, +) == 60)
        let screen = try shop.emporium(["status"])
        #expect(screen.status == 0)
        #expect(screen.output.contains("GROUP") && screen.output.contains("CONSUMER-ID") && screen.output.contains("payment-service"))
        shop.stop()
    }

    /// A broker that is down is when someone runs `emporium status`: it answers within seconds with what it could
    /// read and names what it could not. (It used to ask partition by partition, 10 s for each one the downed
    /// broker leads, and then fail on the first group that broker coordinates.)
    @Test func statusAnswersWithABrokerDownAndNamesWhatItCouldNotRead() async throws {
        let varDir = try temporaryDirectory("status-broker-down")
        defer { try? FileManager.default.removeItem(at: varDir) }
        let cluster = try await startEmbeddedCluster(in: varDir, partitions: 3)
        defer { cluster.stop(signal: SIGKILL) }
        func emporium(_ arguments: [String]) throws -> (status: Int32, output: String) {
            try run(Executables.url("emporium").path, arguments + ["--var-dir", varDir.path], timeout: .seconds(60))
        }
        for (partition, broker) in [(0, 1), (1, 2), (2, 3)] {
            #expect(try emporium(["cluster", "leader", "orders", String(partition), String(broker)]).status == 0)
        }
        #expect(try emporium(["cluster", "broker", "2", "down"]).status == 0)

        let answer = try emporium(["status", "--json"])
        #expect(answer.status == 0, "\(answer.output)")
        // librdkafka logs the refused connections beside the snapshot's one line of JSON.
        let snapshot = json(String(answer.output.split(separator: "\n").first { $0.hasPrefix("{") } ?? ""))
        let unanswered = snapshot["unanswered"] as? [String] ?? []
        #expect(unanswered.contains { $0.hasPrefix("the leaders of") }, "\(unanswered)")
        let orders = (snapshot["topics"] as? [[String: Any]])?.first { $0["name"] as? String == "orders" }
        let partitions = orders?["partitions"] as? [[String: Any]] ?? []
        #expect(partitions.count == 3)
        #expect(partitions.filter { $0["high"] == nil }.map { $0["partition"] as? Int } == [1], "\(partitions)")

        let screen = try emporium(["status"])
        #expect(screen.status == 0 && screen.output.contains("NOT ANSWERED"), "\(screen.output)")
        #expect(cluster.stop(signal: SIGTERM) == 0)
    }

    @Test func theConsoleShowsTheShopLiveInABrowser() async throws {
        let chromium = try #require(["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) },
                                    "deploy/test.sh installs Debian's chromium")
        let shop = try await Shop(partitions: 12)
        let port = try freePorts(1)[0]
        let console = try ChildProcess(Executables.url("emporium"), ["console", "--port", String(port), "--var-dir", shop.varDir.path],
                                       log: shop.varDir.appendingPathComponent("console.log"))
        defer { console.stop(signal: SIGKILL) }
        try await waitUntil(.seconds(30), "the console") { try curl(["-sf", "--max-time", "2", "http://127.0.0.1:\(port)/snapshot"]).status == 0 }
        let generator = try ChildProcess(
            Executables.url("emporium"),
            ["generate", "--url", shop.orderURL, "--orders", "600", "--rate", "40", "--seed", "23", "--json", "--var-dir", shop.varDir.path],
            log: shop.varDir.appendingPathComponent("generate.log"))
        defer { generator.stop(signal: SIGKILL) }

        func page() throws -> String {
            let profile = try temporaryDirectory("chromium")
            defer { try? FileManager.default.removeItem(at: profile) }
            return try run(chromium, Self.chromiumFlags(profile) + ["--virtual-time-budget=4000", "--dump-dom", "http://127.0.0.1:\(port)/?once"],
                           timeout: .seconds(90)).output
        }
        func placed(_ dom: String) -> Int {
            guard let range = dom.range(of: "id=\"placed-total\">") else { return -1 }
            return Int(dom[range.upperBound...].prefix { $0 != "<" }.replacingOccurrences(of: ",", with: "")) ?? -1
        }
        var first = ""
        try await waitUntil(.seconds(60), "orders on the page") {
            first = try page()
            return placed(first) > 0
        }
        for topic in ["orders", "payments", "inventory", "notifications"] {
            let block = try #require(first.range(of: "data-topic=\"\(topic)\"").map { String(first[$0.lowerBound...].prefix(60_000)) })
            let shown = Set((0..<12).filter { block.contains("data-partition=\"\($0)\"") })
            #expect(shown.count == 12, "\(topic) shows partitions \(shown.sorted())")
        }
        var second = ""
        try await waitUntil(.seconds(60), "the numbers to move") {
            second = try page()
            return placed(second) > placed(first)
        }
        #expect(second.contains("→"), "hop latencies are shown")

        let screenshot = shop.varDir.appendingPathComponent("console.png")
        let profile = try temporaryDirectory("chromium")
        defer { try? FileManager.default.removeItem(at: profile) }
        _ = try run(chromium, Self.chromiumFlags(profile) + ["--virtual-time-budget=4000", "--window-size=1280,800",
                                                             "--screenshot=\(screenshot.path)", "http://127.0.0.1:\(port)/?once"],
                  timeout: .seconds(90))
        #expect(FileManager.default.fileExists(atPath: screenshot.path))
        if let keep = ProcessInfo.processInfo.environment["EMPORIUM_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(atPath: screenshot.path, toPath: keep)
        }
        shop.stop()
    }

    static func chromiumFlags(_ profile: URL) -> [String] {
        ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--user-data-dir=\(profile.path)"]
    }
}
