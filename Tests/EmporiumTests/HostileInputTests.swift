import Catalogue
import Foundation
import Testing

/// Input from outside (HTTP requests, anything any producer writes to a topic) on a running shop: none of it may
/// stop a service, stall a partition, or move a message where it does not belong.
@Suite(.serialized) struct HostileInputTests {
    private func produce(_ shop: Shop, topic: String, key: String, value: String, headers: [String] = []) throws {
        let file = shop.varDir.appendingPathComponent("message-\(UUID().uuidString.prefix(8)).txt")
        try value.write(to: file, atomically: true, encoding: .utf8)
        // Placed as every Emporium producer places a key (murmur2), which the audit checks.
        let kcat = try run("/usr/bin/kcat", ["-P", "-b", shop.bootstrap, "-X", "topic.partitioner=murmur2_random", "-t", topic, "-k", key]
                           + headers.flatMap { ["-H", $0] } + [file.path],
                           timeout: .seconds(30))
        #expect(kcat.status == 0, "\(kcat.output)")
    }

    private func values(on topic: String, in shop: Shop) throws -> [String] {
        let kcat = try run("/usr/bin/kcat", ["-C", "-b", shop.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"], timeout: .seconds(30))
        return kcat.output.split(separator: "\n").map(String.init)
    }

    @Test func aHugeHeaderNameAForgedDeadLetterAndARestockFloodStopNothingAndMisrouteNothing() async throws {
        let shop = try await Shop(partitions: 2)
        let pids = Shop.services.map { service in shop.instances(of: service).map(\.pid) }

        // A 70,000-byte header name crash-looped every group that dead-lettered the message it came on.
        try produce(shop, topic: "orders", key: "customer-1", value: "junk with a huge header", headers: [String(repeating: "h", count: 70_000) + "=x"])
        // A message that claims to have been dead-lettered from payments, and a letter forged onto orders.dlq.
        try produce(shop, topic: "orders", key: "customer-2", value: "junk claiming payments", headers: ["dlq-source-topic=payments"])
        try produce(shop, topic: "orders.dlq", key: "customer-3", value: "forged letter", headers: ["dlq-source-topic=payments", "dlq-group=payment-service"])

        // Restocking in steps of the most one request may ask for, until the contract's ceiling says no.
        let inventory = shop.url(of: "inventory-service")
        let product = try #require(Catalogue.standard.product("product-2"))
        let requests = (1_000_000_000 - product.initialStock) / 1_000_000
        let flood = try curl(["-s", "-w", "\n%{http_code}\n", "-H", "Content-Type: application/json", "--data-binary", "{\"quantity\":1000000}"]
                             + Array(repeating: "\(inventory)/products/product-2/restock", count: requests))
        let codes = flood.output.split(separator: "\n").map(String.init).filter { $0.count == 3 && $0.allSatisfy(\.isNumber) }
        #expect(codes.count == requests && codes.allSatisfy { $0 == "200" }, "a restock within the range was refused: \(Set(codes))")
        let refused = try post("\(inventory)/products/product-2/restock", "{\"quantity\":1000000}")
        #expect(refused.code == 422)
        #expect((refused.body["error"] as? String ?? "").contains("past the contract's 1000000000 units"), "\(refused.body)")
        let room = 1_000_000_000 - (json(try get("\(inventory)/products/product-2").text)["available"] as? Int ?? 0)
        #expect(try post("\(inventory)/products/product-2/restock", "{\"quantity\":\(room)}").code == 200, "the last units that fit")
        #expect(try post("\(inventory)/products/product-2/restock", "{\"quantity\":1}").code == 422)

        // Orders for that product still end: its stock events are within the contract every reader checks.
        let run = try shop.generate(["--orders", "40", "--customers", "10", "--seed", "31", "--json"])
        #expect(run.status == 0, "\(run.output)")
        let summary = json(run.output.split(separator: "\n").last.map(String.init) ?? "")
        #expect(summary["pending"] as? Int == 0 && summary["httpErrors"] as? Int == 0, "\(summary)")
        let buyer = try #require((1...1000).map { "customer-\($0)" }.first { !CreditPolicy.standard.isLowLimit($0) })
        let placed = try post("\(shop.orderURL)/orders", "{\"customerId\":\"\(buyer)\",\"lines\":[{\"productId\":\"product-2\",\"quantity\":1}]}")
        let orderId = try #require(placed.body["orderId"] as? String)
        try await waitUntil(.seconds(60), "the order for the restocked product confirmed") {
            json(try get("\(shop.orderURL)/orders/\(orderId)").text)["status"] as? String == "confirmed"
        }

        var letters: [[String: Any]] = []
        try await waitUntil(.seconds(60), "both junk messages dead-lettered by all three groups") {
            letters = try shop.emporium(["dlq", "list", "orders", "--json"]).output.split(separator: "\n").map { json(String($0)) }.filter { !$0.isEmpty }
            return letters.count >= 7
        }
        let huge = letters.filter { $0["value"] as? String == "junk with a huge header" }
        #expect(huge.count == 3 && huge.allSatisfy { (($0["headers"] as? [String: String])?["dlq-reason"] ?? "").contains("headers not kept") })
        let replay = try shop.emporium(["dlq", "replay", "orders"])
        #expect(replay.status == 0, "\(replay.output)")
        #expect(replay.output.contains("replayed 2 messages from 7 dead letters in orders.dlq"), "\(replay.output)")
        #expect(replay.output.contains("not replayed: 1 message"), "\(replay.output)")
        try await waitUntil(.seconds(60), "the replayed copies dead-lettered again") {
            try shop.emporium(["dlq", "list", "orders", "--json"]).output.split(separator: "\n").filter { $0.hasPrefix("{") }.count == 13
        }
        let onPayments = try values(on: "payments", in: shop)
        #expect(!onPayments.contains { $0.contains("junk") || $0.contains("forged") }, "a replay sent a letter to payments")
        #expect(try values(on: "orders", in: shop).filter { $0 == "junk claiming payments" }.count == 2, "the replay went back to orders")

        #expect(Shop.services.map { service in shop.instances(of: service).map(\.pid) } == pids)
        #expect(Shop.services.allSatisfy { service in shop.instances(of: service).allSatisfy(\.isRunning) }, "a service stopped")
        try expectCleanAudit(shop)
        shop.stop()
    }
}
