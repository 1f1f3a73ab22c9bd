import Catalogue
import DomainEvents
import Foundation
import Kafka
import ServiceRuntime
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

/// A seeded campaign of mutated copies of real messages, written to every topic and dead-letter topic while
/// orders flow: bit flips, truncations, a giant header name, hundreds of repeated headers, wrong topics, forged
/// `dlq-*` headers, values past the contract's bounds, exact copies. A mutation that would make a new valid
/// event (a forgery the contract cannot tell from a real one) is not sent: the campaign tests robustness, not
/// authentication. Afterwards no service has restarted, every order ended, the audit is clean, and every message
/// sent that is not a valid event was dead-lettered, with a reason, by a group that reads its topic (a group
/// skips, on its headers alone, a type of its topic it does not react to: another group reacts to it).
@Suite(.serialized) struct HostileCampaignTests {
    static let readers: [String: [String]] = [
        "orders": ["payment-service", "inventory-service", "notification-service"],
        "payments": ["order-service"], "inventory": ["order-service"], "notifications": ["order-service"],
    ]

    enum Mutation: CaseIterable { case bitFlip, truncation, giantHeader, repeatedHeaders, wrongTopic, forgedDeadLetterHeaders, pastBound, copy }

    static func mutate(_ message: ConsumedMessage, _ mutation: Mutation, random: inout SeededRandom) -> OutgoingMessage {
        var value = Array(message.value), headers = message.headers, topic = message.topic
        switch mutation {
        case .bitFlip:
            let index = Int(random.next() % UInt64(value.count))
            value[index] ^= UInt8(1 << (random.next() % 8))
        case .truncation:
            value = Array(value.prefix(Int(random.next() % UInt64(value.count))))
        case .giantHeader:
            headers.append(KafkaHeader(String(repeating: "g", count: 70_000), "x"))
        case .repeatedHeaders:
            headers = (0..<200).map { KafkaHeader("event-type", "Junk\($0)") } + headers
        case .wrongTopic:
            let others = readers.keys.filter { $0 != topic }.sorted()
            topic = others[Int(random.next() % UInt64(others.count))]
        case .forgedDeadLetterHeaders:
            headers += [KafkaHeader("dlq-source-topic", "payments"), KafkaHeader("dlq-group", "someone"), KafkaHeader("event-type", "Forged")]
            headers.removeAll { $0.name == "event-type" && String(decoding: $0.value, as: UTF8.self) != "Forged" }
        case .pastBound:
            // Every integer of the payload one past anything the contract allows.
            let text = String(decoding: value, as: UTF8.self)
            value = Array(text.replacing(/"(quantity|totalCents|amountCents|available|requested|unitPriceCents|lineCount)":\d+/) {
                "\"\($0.1)\":1000000000000001"
            }.utf8)
        case .copy:
            break
        }
        return OutgoingMessage(topic: topic, key: message.key.map(Array.init), value: value, headers: headers)
    }

    @Test func mutatedMessagesOnEveryTopicStopNothingAndEveryInvalidOneIsDeadLetteredByAReader() async throws {
        let shop = try await Shop(partitions: 4)
        let pids = Shop.services.map { service in shop.instances(of: service).map(\.pid) }
        let warmup = try shop.generate(["--orders", "40", "--customers", "10", "--seed", "41", "--json"])
        #expect(warmup.status == 0, "\(warmup.output)")
        let configuration = KafkaConfiguration(bootstrapServers: shop.bootstrap)
        var originals: [ConsumedMessage] = []
        for topic in Self.readers.keys.sorted() {
            originals += try await TopicReader(configuration: configuration).readToEnd(topic, group: "campaign-\(topic)")
        }
        try #require(originals.count > 100, "too few real messages to mutate: \(originals.count)")

        let generator = try ChildProcess(
            Executables.url("emporium"),
            ["generate", "--url", shop.orderURL, "--orders", "300", "--rate", "30", "--customers", "50", "--seed", "42", "--json",
             "--var-dir", shop.varDir.path],
            log: shop.varDir.appendingPathComponent("generate.log"))
        var random = SeededRandom(seed: 2026)
        var campaign: [OutgoingMessage] = []
        var invalid = 0, copies = 0, forgeriesNotSent = 0
        for round in 0..<80 {
            let original = originals[Int(random.next() % UInt64(originals.count))]
            let mutation = Mutation.allCases[round % Mutation.allCases.count]
            var message = Self.mutate(original, mutation, random: &random)
            let consumed = ConsumedMessage(topic: message.topic, partition: 0, offset: 0, key: message.key, value: message.value, headers: message.headers)
            if let envelope = try? Wire.decode(consumed) {
                guard envelope.eventId == original.header(Wire.Header.eventId) else { forgeriesNotSent += 1; continue }
                copies += 1
            } else {
                invalid += 1
            }
            campaign.append(message)
            // Every tenth goes to a dead-letter topic instead, as a forged letter no consumer reads.
            if round % 10 == 9 {
                message.topic += ".dlq"
                campaign.append(message)
            }
        }
        let producer = try KafkaProducer(configuration: configuration)
        let reports = await producer.send(campaign)
        try await producer.close(within: .seconds(30))
        var expected: [String] = []
        for (message, report) in zip(campaign, reports) {
            let delivered = try report.get()
            let consumed = ConsumedMessage(topic: message.topic, partition: 0, offset: 0, key: message.key, value: message.value, headers: message.headers)
            if Self.readers[message.topic] != nil, (try? Wire.decode(consumed)) == nil {
                expected.append("\(message.topic)/\(delivered.partition)/\(delivered.offset)")
            }
        }
        print("campaign: \(campaign.count) messages sent (\(invalid) invalid, \(copies) copies, the rest forged letters on dead-letter topics); \(forgeriesNotSent) forgeries not sent")
        #expect(invalid >= 30 && copies >= 10, "the campaign did not cover both kinds: \(invalid) invalid, \(copies) copies")

        try await waitUntil(.seconds(240), "the generator finishes") { !generator.isRunning }
        #expect(generator.stop() == 0, "generator: \(generator.output.suffix(2_000))")
        let summary = json(generator.output.split(separator: "\n").last.map(String.init) ?? "")
        #expect(summary["pending"] as? Int == 0 && summary["httpErrors"] as? Int == 0, "\(summary)")
        var missing: [String] = []
        // Waited for, then judged below, so that a failure names what is missing.
        try? await waitUntil(.seconds(60), "every invalid message dead-lettered by a reader of its topic") {
            var letters = Set<String>()
            for topic in Self.readers.keys {
                for letter in try await TopicReader(configuration: configuration).readToEnd(topic + ".dlq", group: "campaign-check-\(UUID())") {
                    let added = ["dlq-group", "dlq-source-topic", "dlq-source-partition", "dlq-source-offset", "dlq-reason"].map { name in
                        letter.headers.last { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) } ?? ""
                    }
                    if Self.readers[added[1]]?.contains(added[0]) == true, !added[4].isEmpty { letters.insert(added[1..<4].joined(separator: "/")) }
                }
            }
            missing = expected.filter { !letters.contains($0) }
            return missing.isEmpty
        }
        #expect(missing.isEmpty, "\(missing.count) not dead-lettered, among them \(missing.prefix(5))")
        #expect(Shop.services.map { service in shop.instances(of: service).map(\.pid) } == pids)
        #expect(Shop.services.allSatisfy { service in shop.instances(of: service).allSatisfy(\.isRunning) }, "a service stopped")
        try expectCleanAudit(shop)
        shop.stop()
    }
}
