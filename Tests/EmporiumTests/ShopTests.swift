import Catalogue
import Foundation
import GRDB
import Kafka
import Testing

@Suite(.serialized) struct ShopTests {
    /// Waits until every order is terminal.
    private func waitForOutcomes(_ ids: [String], in shop: Shop) async throws -> [String: [String: Any]] {
        var orders: [String: [String: Any]] = [:]
        try await waitUntil(.seconds(90), "every order terminal") {
            for id in ids where (orders[id]?["status"] as? String ?? "pending") == "pending" {
                orders[id] = json(try get("\(shop.orderURL)/orders/\(id)").text)
            }
            return orders.values.allSatisfy { ($0["status"] as? String) != "pending" }
        }
        return orders
    }

    private func timeline(_ order: [String: Any]) -> [String] {
        (order["timeline"] as? [[String: Any]] ?? []).compactMap { $0["type"] as? String }
    }

    @Test func twoThousandSkewedOrdersThroughTwoInstancesEachEndTerminalWithACleanAudit() async throws {
        let shop = try await Shop(instances: ["payment-service": 2, "inventory-service": 2])
        let run = try shop.generate(["--orders", "2000", "--customers", "50", "--products", "200", "--skew", "1.0", "--seed", "7", "--json"])
        #expect(run.status == 0, "generator: \(run.output)")
        let summary = json(run.output.split(separator: "\n").last.map(String.init) ?? "")
        #expect(summary["placed"] as? Int == 2000)
        #expect(summary["pending"] as? Int == 0)
        #expect(summary["httpErrors"] as? Int == 0)
        try expectCleanAudit(shop, agreeingWith: summary)

        // Two instances each, seen from the processes themselves: two PIDs, the 12 partitions split between them.
        for service in ["payment-service", "inventory-service"] {
            let statuses = try (1...2).map { json(try get("\(shop.url(of: service, instance: $0))/status").text) }
            #expect(Set(statuses.compactMap { $0["pid"] as? Int }).count == 2)
            let owned = statuses.map { ($0["partitions"] as? [[String: Any]] ?? []).compactMap { $0["partition"] as? Int } }
            #expect(owned.allSatisfy { !$0.isEmpty }, "both \(service) instances own partitions: \(owned)")
            #expect(Set(owned[0]).isDisjoint(with: owned[1]) && Set(owned[0] + owned[1]) == Set(0..<12))
        }

        // Each consumer group handled every key's events in increasing order and read every offset to the end.
        let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: shop.bootstrap))
        let consumed = ["order-service": ["payments", "inventory"], "payment-service": ["orders"],
                        "inventory-service": ["orders"], "notification-service": ["orders"]]
        for (service, topics) in consumed {
            let anomalies = try await shop.database(service).read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sequenceAnomaly") }
            #expect(anomalies == 0, "\(service) saw a sequence go backwards")
            let ends = try await admin.offsets(of: topics).filter { $0.high > 0 }
            try await waitUntil(.seconds(30), "\(service) reads to the end") {
                let stored = try shop.database(service).read { db in
                    try Row.fetchAll(db, sql: "SELECT topic, partition, nextOffset FROM consumerOffset")
                        .map { "\($0["topic"] as String)/\($0["partition"] as Int32)=\($0["nextOffset"] as Int64)" }
                }
                return Set(ends.map { "\($0.partition.topic)/\($0.partition.partition)=\($0.high)" }).isSubset(of: stored)
            }
        }
        let leases = shop.instances(of: "payment-service").map { $0.output.contains("relay lease acquired") }
        #expect(leases.filter { $0 }.count == 1, "exactly one payment-service instance relays")
        let statuses = shop.stop()
        #expect(statuses.values.allSatisfy { $0 == 0 }, "exit statuses \(statuses)")
    }

    /// Holds: an authorization counts against the customer's credit until the order ends. With inventory-service
    /// stopped no order can be confirmed, so the holds stay open: the orders beyond the limit are declined. Once
    /// the held orders are confirmed and captured, the credit is free again.
    @Test func openHoldsDeclineOrdersOverTheLimitAndCaptureFreesTheCredit() async throws {
        let shop = try await Shop(partitions: 4)
        let customer = try #require((1...1000).map { "customer-\($0)" }.first { CreditPolicy.standard.isLowLimit($0) })
        let limit = CreditPolicy.standard.limitCents(for: customer)
        let product = try #require(Catalogue.standard.product("product-3"))
        let perOrder = product.unitPriceCents * 2
        let fitting = limit / perOrder
        let body = "{\"customerId\":\"\(customer)\",\"lines\":[{\"productId\":\"product-3\",\"quantity\":2}]}"
        #expect(shop.instances(of: "inventory-service")[0].stop(signal: SIGTERM) == 0)

        var ids: [String] = []
        for _ in 0..<(fitting + 2) {
            let placed = try post("\(shop.orderURL)/orders", body)
            #expect(placed.code == 202)
            ids.append(try #require(placed.body["orderId"] as? String))
        }
        let (held, over) = (Array(ids.prefix(fitting)), Array(ids.dropFirst(fitting)))
        let declined = try await waitForOutcomes(over, in: shop)
        for id in over {
            #expect(declined[id]!["reason"] as? String == "payment-declined")
            #expect(!timeline(declined[id]!).contains("PaymentAuthorized"), "an order over the limit was authorized")
        }
        let credit = "http://127.0.0.1:\(shop.port(of: "payment-service"))/customers/\(customer)/credit"
        #expect(json(try get(credit).text)["heldCents"] as? Int == fitting * perOrder)
        for id in held { #expect(json(try get("\(shop.orderURL)/orders/\(id)").text)["status"] as? String == "pending") }

        try shop.start("inventory-service", instance: 1)
        let confirmed = try await waitForOutcomes(held, in: shop)
        #expect(held.allSatisfy { confirmed[$0]!["status"] as? String == "confirmed" })
        try await waitUntil(.seconds(30), "every hold captured") { json(try get(credit).text)["heldCents"] as? Int == 0 }

        let again = try post("\(shop.orderURL)/orders", body)
        let next = try await waitForOutcomes([try #require(again.body["orderId"] as? String)], in: shop)
        #expect(next.values.first?["status"] as? String == "confirmed", "the captured orders' credit is free again")
        try expectCleanAudit(shop)
        shop.stop()
    }

    /// The warehouse restocks a product that a reservation leaves at its reorder point; an order for more than is
    /// on hand is still short, and its authorized payment is refunded, never captured.
    @Test func aReservationAtTheReorderPointRestocksAndAnOrderLargerThanTheStockIsCancelledAndRefunded() async throws {
        let shop = try await Shop(partitions: 4)
        let scarce = try #require(Catalogue.standard.product("product-10"))
        let buyer = try #require((1...1000).map { "customer-\($0)" }.first { !CreditPolicy.standard.isLowLimit($0) })
        let stock = "http://127.0.0.1:\(shop.port(of: "inventory-service"))/products/product-10"
        func order(_ quantity: Int) async throws -> [String: Any] {
            let placed = try post("\(shop.orderURL)/orders", "{\"customerId\":\"\(buyer)\",\"lines\":[{\"productId\":\"product-10\",\"quantity\":\(quantity)}]}")
            let id = try #require(placed.body["orderId"] as? String)
            return try await waitForOutcomes([id], in: shop)[id]!
        }

        let drained = try await order(scarce.initialStock - scarce.reorderPoint)
        #expect(drained["status"] as? String == "confirmed")
        #expect(json(try get(stock).text)["available"] as? Int == scarce.initialStock, "restocked to its initial level")

        let tooLarge = try await order(scarce.initialStock + 1)
        #expect(tooLarge["status"] as? String == "cancelled" && tooLarge["reason"] as? String == "out-of-stock")
        let id = try #require(tooLarge["orderId"] as? String)
        try await waitUntil(.seconds(30), "the refund and the email on the timeline") {
            let events = self.timeline(json(try get("\(shop.orderURL)/orders/\(id)").text))
            return events.contains("PaymentRefunded") && events.contains("NotificationSent")
        }
        let events = timeline(json(try get("\(shop.orderURL)/orders/\(id)").text))
        #expect(!events.contains("PaymentCaptured"))
        #expect(events.first == "OrderPlaced" && events.contains("OrderCancelled"))
        #expect(json(try get(stock).text)["available"] as? Int == scarce.initialStock, "a short order takes nothing")
        try expectCleanAudit(shop)
        shop.stop()
    }

    /// A shop must look like a shop at any run length: with holds that end and a warehouse that replenishes, the
    /// last 5,000 of 20,000 orders end as well as the first 5,000, and the README's example is still confirmed.
    @Test func twentyThousandOrdersEndAsWellAtTheEndAsAtTheStart() async throws {
        let shop = try await Shop()
        let run = try shop.generate(["--orders", "20000", "--concurrency", "64", "--customers", "100", "--products", "200",
                                     "--skew", "1.0", "--seed", "13", "--timeout", "600", "--json"])
        #expect(run.status == 0, "generator: \(run.output)")
        let summary = json(run.output.split(separator: "\n").last.map(String.init) ?? "")
        #expect(summary["pending"] as? Int == 0)
        print("20,000 orders: \(summary)")
        let statuses = try await shop.database("order-service").read { db in
            try String.fetchAll(db, sql: "SELECT status FROM customerOrder ORDER BY rowid")
        }
        #expect(statuses.count == 20_000)
        let first = Double(statuses.prefix(5_000).filter { $0 == "confirmed" }.count) / 5_000
        let last = Double(statuses.suffix(5_000).filter { $0 == "confirmed" }.count) / 5_000
        print("confirmed: first 5,000 \(first), last 5,000 \(last)")
        #expect(first >= 0.8 && last >= 0.8)

        let example = try post("\(shop.orderURL)/orders", "{\"customerId\":\"customer-1\",\"lines\":[{\"productId\":\"product-3\",\"quantity\":2}]}")
        let id = try #require(example.body["orderId"] as? String)
        let outcome = try await waitForOutcomes([id], in: shop)
        #expect(outcome[id]?["status"] as? String == "confirmed", "the README's example: \(outcome[id] ?? [:])")
        try await waitUntil(.seconds(30), "the example's whole saga on its timeline") {
            Set(self.timeline(json(try get("\(shop.orderURL)/orders/\(id)").text))).isSuperset(of: [
                "OrderPlaced", "PaymentAuthorized", "StockReserved", "OrderConfirmed", "PaymentCaptured", "NotificationSent",
            ])
        }
        let events = timeline(json(try get("\(shop.orderURL)/orders/\(id)").text))
        #expect(events.first == "OrderPlaced")
        #expect(events.firstIndex(of: "OrderConfirmed")! < events.firstIndex(of: "PaymentCaptured")!)
        try expectCleanAudit(shop)
        shop.stop()
    }

    @Test func aRetriedPostWithTheSameIdempotencyKeyMakesOneOrderAndBadRequestsGetJSONErrors() async throws {
        let shop = try await Shop(partitions: 2)
        let body = "{\"customerId\":\"customer-7\",\"lines\":[{\"productId\":\"product-1\",\"quantity\":1}]}"
        let first = try post("\(shop.orderURL)/orders", body, headers: ["Idempotency-Key: retry-me"])
        let second = try post("\(shop.orderURL)/orders", body, headers: ["Idempotency-Key: retry-me"])
        #expect(first.code == 202 && second.code == 202)
        #expect(first.body["orderId"] as? String == second.body["orderId"] as? String)
        let list = try JSONSerialization.jsonObject(with: Data(try get("\(shop.orderURL)/orders?customerId=customer-7").text.utf8)) as? [Any]
        #expect(list?.count == 1)
        let reused = try post("\(shop.orderURL)/orders", body.replacingOccurrences(of: "\"quantity\":1", with: "\"quantity\":2"), headers: ["Idempotency-Key: retry-me"])
        #expect(reused.code == 422)

        let cases: [(String, [String], Int, String)] = [
            ("{not json", [], 400, "not valid JSON"),
            ("{\"customerId\":\"c\"}", [], 400, "missing field 'lines'"),
            ("{\"customerId\":\"c\",\"lines\":[{\"productId\":\"product-0\",\"quantity\":1}]}", [], 422, "unknown product"),
            ("{\"customerId\":\"c\",\"lines\":[{\"productId\":\"product-1\",\"quantity\":0}]}", [], 422, "quantity"),
            ("{\"customerId\":\"c\",\"lines\":[]}", [], 422, "1 to 50 lines"),
            ("{\"customerId\":\"c\",\"lines\":[{\"productId\":\"product-1\",\"quantity\":1},{\"productId\":\"product-1\",\"quantity\":1}]}", [], 422, "one line per product"),
            (String(repeating: " ", count: 70_000), [], 413, "larger than"),
        ]
        for (payload, headers, code, message) in cases {
            let response = try post("\(shop.orderURL)/orders", payload, headers: headers)
            #expect(response.code == code, "\(payload.prefix(40)) → \(response.code)")
            #expect((response.body["error"] as? String)?.contains(message) == true, "\(response.body)")
        }
        let wrongType = try curl(["-s", "-w", "\n%{http_code}", "-X", "POST", "\(shop.orderURL)/orders", "-H", "Content-Type: text/plain", "-d", body])
        #expect(wrongType.output.hasSuffix("415") && wrongType.output.contains("application/json"))
        let missing = try get("\(shop.orderURL)/nowhere")
        #expect(missing.code == 404 && json(missing.text)["error"] != nil)

        // Read the stock only once the order above has reserved its line, so that nothing moves it between the
        // read and the restock.
        try await waitUntil(.seconds(30), "every order terminal") {
            let orders = try JSONSerialization.jsonObject(with: Data(try get("\(shop.orderURL)/orders?customerId=customer-7").text.utf8)) as? [[String: Any]]
            return orders?.allSatisfy { $0["status"] as? String != "pending" } ?? false
        }
        let inventory = "http://127.0.0.1:\(shop.port(of: "inventory-service"))"
        let before = try #require(json(try get("\(inventory)/products/product-1").text)["available"] as? Int)
        let restocked = try post("\(inventory)/products/product-1/restock", "{\"quantity\":25}")
        #expect(restocked.code == 200 && restocked.body["available"] as? Int == before + 25)
        #expect(try post("\(inventory)/products/product-1/restock", "{\"quantity\":0}").code == 422)
        #expect(try post("\(inventory)/products/nothing/restock", "{\"quantity\":1}").code == 404)

        // A customer's orders come a page at a time, each page pointing at the next.
        for _ in 0..<4 { #expect(try post("\(shop.orderURL)/orders", body.replacingOccurrences(of: "customer-7", with: "customer-8")).code == 202) }
        var seen: [String] = []
        var next: String? = "/orders?customerId=customer-8&limit=3"
        var pages = 0
        while let path = next, pages < 5 {
            let page = try curl(["-s", "-D", "-", "\(shop.orderURL)\(path)"]).output
            let (head, text) = (page.components(separatedBy: "\r\n\r\n")[0], page.components(separatedBy: "\r\n\r\n").dropFirst().joined())
            let orders = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
            seen += orders.compactMap { $0["orderId"] as? String }
            next = head.firstMatch(of: /(?i)link: <([^>]+)>; rel="next"/).map { String($0.1) }
            pages += 1
        }
        #expect(pages == 2 && seen.count == 4 && Set(seen).count == 4, "\(pages) pages, \(seen)")
        #expect(try get("\(shop.orderURL)/orders?customerId=customer-8&limit=0").code == 400)
        #expect(try get("\(shop.orderURL)/orders?customerId=customer-8&after=ord-none").code == 400)
        try expectCleanAudit(shop)
        shop.stop()
    }

    @Test func aPoisonMessageLandsInTheDeadLetterTopicOncePerGroupAndLaterOrdersComplete() async throws {
        let shop = try await Shop(partitions: 4)
        let poison = shop.varDir.appendingPathComponent("poison.txt")
        try "this is not an event\n".write(to: poison, atomically: true, encoding: .utf8)
        let kcat = try run("/usr/bin/kcat", ["-P", "-b", shop.bootstrap, "-t", "orders", "-k", "customer-1", "-l", poison.path], timeout: .seconds(30))
        #expect(kcat.status == 0, "\(kcat.output)")

        let run = try shop.generate(["--orders", "50", "--customers", "10", "--seed", "3", "--json"])
        #expect(run.status == 0, "\(run.output)")
        let placed = json(run.output.split(separator: "\n").last.map(String.init) ?? "")
        #expect(placed["placed"] as? Int == 50 && placed["httpErrors"] as? Int == 0 && placed["pending"] as? Int == 0, "\(placed)")
        var letters: [[String: Any]] = []
        try await waitUntil(.seconds(60), "three dead letters") {
            letters = try shop.emporium(["dlq", "list", "orders", "--json"]).output.split(separator: "\n").map { json(String($0)) }.filter { !$0.isEmpty }
            return letters.count >= 3
        }
        let groups = letters.compactMap { ($0["headers"] as? [String: String])?["dlq-group"] }.sorted()
        #expect(groups == ["inventory-service", "notification-service", "payment-service"])
        #expect(letters.allSatisfy { ($0["value"] as? String) == "this is not an event" })
        #expect(letters.allSatisfy { (($0["headers"] as? [String: String])?["dlq-reason"] ?? "").contains("event-type header is missing") })
        try expectCleanAudit(shop)

        // Replay sends the failed message back once, though three groups dead-lettered it; its cause unfixed,
        // each group dead-letters the copy again, and a second replay sends only that copy.
        let replay = try shop.emporium(["dlq", "replay", "orders"])
        #expect(replay.status == 0)
        #expect(replay.output.contains("replayed 1 message from 3 dead letters in orders.dlq"), "\(replay.output)")
        try await waitUntil(.seconds(60), "six dead letters") {
            try shop.emporium(["dlq", "list", "orders", "--json"]).output.split(separator: "\n").filter { $0.hasPrefix("{") }.count == 6
        }
        let again = try shop.emporium(["dlq", "replay", "orders"]).output
        #expect(again.contains("replayed 1 message from 3 dead letters"), "\(again)")
        shop.stop()
    }

    /// payment-service's handler fails on one customer's orders until the cause (a write its database refuses) is
    /// fixed: both orders wait in `orders.dlq`, one of them is cancelled meanwhile; the replay confirms the other
    /// and charges nothing for the cancelled one.
    @Test func aHandlerFailureReplayedAfterItsCauseIsFixedEndsTheOrderAndChargesNothingForACancelledOne() async throws {
        let shop = try await Shop(partitions: 2)
        let customer = try #require((1...1000).map { "customer-\($0)" }.first { !CreditPolicy.standard.isLowLimit($0) })
        let payments = try shop.databaseForWriting("payment-service")
        try await payments.write { db in
            try db.execute(sql: """
                CREATE TRIGGER refusePayments BEFORE INSERT ON payment WHEN NEW.customerId = '\(customer)'
                BEGIN SELECT RAISE(ABORT, 'simulated: this customer''s payments cannot be written'); END
                """)
        }
        func place(_ product: String, _ quantity: Int) throws -> String {
            let placed = try post("\(shop.orderURL)/orders", "{\"customerId\":\"\(customer)\",\"lines\":[{\"productId\":\"\(product)\",\"quantity\":\(quantity)}]}")
            return try #require(placed.body["orderId"] as? String, "\(placed)")
        }
        let waiting = try place("product-1", 1)
        let scarce = try #require(Catalogue.standard.product("product-10"))
        let tooLarge = try place("product-10", scarce.initialStock + 1)

        try await waitUntil(.seconds(60), "two dead letters from payment-service") {
            try shop.emporium(["dlq", "list", "orders", "--json"]).output.split(separator: "\n").filter { $0.hasPrefix("{") }.count == 2
        }
        let letters = try shop.emporium(["dlq", "list", "orders", "--json"]).output.split(separator: "\n").filter { $0.hasPrefix("{") }.map { json(String($0)) }
        #expect(letters.count == 2)
        #expect(letters.allSatisfy { ($0["headers"] as? [String: String])?["dlq-group"] == "payment-service" })
        #expect(letters.allSatisfy { (($0["headers"] as? [String: String])?["dlq-reason"] ?? "").contains("simulated") })
        let cancelled = try await waitForOutcomes([tooLarge], in: shop)[tooLarge]!
        #expect(cancelled["reason"] as? String == "out-of-stock")
        #expect(json(try get("\(shop.orderURL)/orders/\(waiting)").text)["status"] as? String == "pending", "no payment decision yet")

        try await payments.write { db in try db.execute(sql: "DROP TRIGGER refusePayments") }
        let replay = try shop.emporium(["dlq", "replay", "orders"])
        #expect(replay.output.contains("replayed 2 messages from 2 dead letters in orders.dlq"), "\(replay.output)")

        let confirmed = try await waitForOutcomes([waiting], in: shop)[waiting]!
        #expect(confirmed["status"] as? String == "confirmed", "\(confirmed)")
        try await waitUntil(.seconds(30), "the capture") {
            try await shop.database("payment-service").read { db in
                try String.fetchOne(db, sql: "SELECT status FROM payment WHERE orderId = ?", arguments: [waiting])
            } == "captured"
        }
        try expectCleanAudit(shop)
        let (charged, held, anomalies) = try await shop.database("payment-service").read { db in
            (try Int.fetchOne(db, sql: "SELECT count(*) FROM payment WHERE orderId = ?", arguments: [tooLarge]) ?? -1,
             try Int.fetchOne(db, sql: "SELECT heldCents FROM customerCredit WHERE customerId = ?", arguments: [customer]) ?? -1,
             try Int.fetchOne(db, sql: "SELECT count(*) FROM sequenceAnomaly") ?? -1)
        }
        #expect(charged == 0, "the cancelled order was authorized when its placement came back")
        #expect(held == 0, "credit still held after both orders ended")
        #expect(anomalies == 0, "the replayed placements were taken for sequences going backwards")
        shop.stop()
    }

    @Test func withAnSMTPRelayEachOutcomeIsMailedOnceUnderItsMessageID() async throws {
        let sink = try temporaryDirectory("smtp")
        defer { try? FileManager.default.removeItem(at: sink) }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Support/smtp_sink.py")
        let port = try freePorts(1)[0]
        let server = try ChildProcess(URL(fileURLWithPath: "/usr/bin/env"), ["python3", script.path, String(port), sink.path],
                                      log: sink.appendingPathComponent("server.log"))
        defer { server.stop(signal: SIGKILL) }
        try await waitUntil(.seconds(10), "the SMTP sink") { server.output.contains("ready") }
        let shop = try await Shop(partitions: 2,
                                  environment: ["notification-service": ["SMTP_URL": "smtp://127.0.0.1:\(port)"]])
        let run = try shop.generate(["--orders", "5", "--customers", "3", "--seed", "5", "--json"])
        #expect(run.status == 0, "\(run.output)")
        var mailed: [String] = []
        try await waitUntil(.seconds(30), "five emails at the relay") {
            mailed = try FileManager.default.contentsOfDirectory(atPath: sink.path).filter { $0.hasSuffix(".eml") }
            return mailed.count >= 5
        }
        // Once the shop is at rest (the audit waits for that), no further mail may have arrived.
        try expectCleanAudit(shop)
        mailed = try FileManager.default.contentsOfDirectory(atPath: sink.path).filter { $0.hasSuffix(".eml") }
        #expect(mailed.count == 5)
        let files = try FileManager.default.contentsOfDirectory(atPath: shop.varDir.appendingPathComponent("mail").path)
        var messageIds = Set<String>()
        for name in mailed {
            let message = try String(contentsOf: sink.appendingPathComponent(name), encoding: .utf8)
            let messageId = try #require(message.split(separator: "\r\n").first { $0.hasPrefix("Message-ID: <") })
            messageIds.insert(String(messageId))
            let order = messageId.dropFirst("Message-ID: <".count).split(separator: ".").first.map(String.init) ?? ""
            #expect(files.contains { $0.hasPrefix(order) }, "the relay got \(order), which has no .eml file")
        }
        #expect(messageIds.count == 5, "every email has its own Message-ID")
        shop.stop()
    }

    /// Two notification-service instances share one database and one SMTP relay that refuses one customer's
    /// mailbox for good, defers another's every time and turns the first messages away for now: each email is sent
    /// once, the refused ones are recorded as failed with the relay's reply, the deferred ones are parked after
    /// their tries, and the rest go on without waiting for them.
    @Test func twoNotificationInstancesAndAFlakyRelaySendEachEmailOnceAndRecordRefusals() async throws {
        let sink = try temporaryDirectory("smtp")
        defer { try? FileManager.default.removeItem(at: sink) }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Support/smtp_sink.py")
        let port = try freePorts(1)[0]
        let server = try ChildProcess(URL(fileURLWithPath: "/usr/bin/env"),
                                      ["python3", script.path, String(port), sink.path, "--refuse", "customer-2@", "--defer", "customer-4@", "--fail-first", "3"],
                                      log: sink.appendingPathComponent("server.log"))
        defer { server.stop(signal: SIGKILL) }
        try await waitUntil(.seconds(10), "the SMTP sink") { server.output.contains("ready") }
        // Deferred emails tried again after 1, 2, 4 and 8 s rather than the default minutes, and parked at the fifth.
        let shop = try await Shop(instances: ["notification-service": 2], partitions: 2, environment: ["notification-service": [
            "SMTP_URL": "smtp://127.0.0.1:\(port)", "MAIL_RETRY_SECONDS": "1", "MAIL_ATTEMPTS": "5",
        ]])
        let run = try shop.generate(["--orders", "30", "--customers", "5", "--seed", "8", "--json"])
        #expect(run.status == 0, "\(run.output)")
        try expectCleanAudit(shop)
        let database = try shop.database("notification-service")
        try await waitUntil(.seconds(60), "every email delivered or refused") {
            try await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM email WHERE writtenAt IS NULL AND failedAt IS NULL") } == 0
        }
        let (delivered, refused) = try await database.read { db in
            (try String.fetchAll(db, sql: "SELECT messageId FROM email WHERE writtenAt IS NOT NULL"),
             try Row.fetchAll(db, sql: "SELECT customerId, failureReason FROM email WHERE failedAt IS NOT NULL"))
        }
        #expect(delivered.count + refused.count == 30)
        let refusedFor = { (customer: String) in refused.filter { ($0["customerId"] as String) == customer }.map { $0["failureReason"] as String } }
        #expect(!refusedFor("customer-2").isEmpty && refusedFor("customer-2").allSatisfy { $0.contains("550") })
        #expect(!refusedFor("customer-4").isEmpty && refusedFor("customer-4").allSatisfy { $0.contains("parked after 5 tries") && $0.contains("450") })
        #expect(refusedFor("customer-2").count + refusedFor("customer-4").count == refused.count)
        #expect(Shop.services.allSatisfy { service in shop.instances(of: service).allSatisfy(\.isRunning) })
        let mailed = try FileManager.default.contentsOfDirectory(atPath: sink.path).filter { $0.hasSuffix(".eml") }
        let received = try mailed.map { name in
            try String(contentsOf: sink.appendingPathComponent(name), encoding: .utf8).split(separator: "\r\n")
                .first { $0.hasPrefix("Message-ID: ") }.map { String($0.dropFirst("Message-ID: ".count)) } ?? ""
        }
        #expect(received.count == delivered.count, "each delivered email reached the relay once")
        #expect(Set(received) == Set(delivered))
        let senders = shop.instances(of: "notification-service").filter { $0.output.contains("mail lease acquired") }
        #expect(senders.count == 1, "exactly one instance delivers mail")
        shop.stop()
    }

    /// Issue 4's lifecycle: SIGTERM mid-stream exits 0, and killing the relaying instance hands the relay over.
    @Test func sigtermAndAKilledRelayMidStreamLoseNothingAndApplyNothingTwice() async throws {
        let shop = try await Shop(instances: ["payment-service": 2], partitions: 6)
        let generator = try ChildProcess(
            Executables.url("emporium"),
            ["generate", "--url", shop.orderURL, "--orders", "600", "--rate", "100", "--customers", "40", "--seed", "11", "--json", "--var-dir", shop.varDir.path],
            log: shop.varDir.appendingPathComponent("generate.log"))
        try await waitUntil(.seconds(60), "orders flowing") {
            try shop.database("payment-service").read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM payment") ?? 0 } > 100
        }
        // SIGTERM inventory-service mid-stream: it finishes its batch, commits, flushes and exits 0.
        let inventory = shop.instances(of: "inventory-service")[0]
        #expect(inventory.stop(signal: SIGTERM) == 0)
        #expect(inventory.output.contains("relay stopped"))
        try shop.start("inventory-service", instance: 1)

        // SIGTERM order-service with requests in flight: what it answered 202 stays accepted and ends; what it
        // refused while stopping, the generator sends again under the same Idempotency-Key.
        let orders = shop.instances(of: "order-service")[0]
        let placedBeforeStop = try await shop.database("order-service").read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM customerOrder") ?? 0 }
        #expect(orders.stop(signal: SIGTERM) == 0)
        #expect(placedBeforeStop < 600, "the generator was done before order-service stopped")
        try shop.start("order-service", instance: 1)

        // Kill -9 the payment-service instance that holds the relay lease; the other takes over.
        let payments = shop.instances(of: "payment-service")
        let leader = try #require(payments.first { $0.output.contains("relay lease acquired") })
        leader.stop(signal: SIGKILL)
        let standby = try #require(payments.first { $0 !== leader })
        try await waitUntil(.seconds(10), "the standby takes the relay") { standby.output.contains("relay lease acquired") }

        try await waitUntil(.seconds(180), "the generator finishes") { !generator.isRunning }
        #expect(generator.stop() == 0, "generator: \(generator.output)")
        let summary = json(generator.output.split(separator: "\n").last.map(String.init) ?? "")
        #expect(summary["placed"] as? Int == 600 && summary["httpErrors"] as? Int == 0 && summary["pending"] as? Int == 0, "\(summary)")
        try expectCleanAudit(shop, agreeingWith: summary)
        let statuses = shop.stop()
        #expect(statuses.values.allSatisfy { $0 == 0 }, "exit statuses \(statuses)")
    }
}
