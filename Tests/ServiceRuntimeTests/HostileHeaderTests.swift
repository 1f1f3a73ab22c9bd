import DomainEvents
import Foundation
import GRDB
import Kafka
@testable import ServiceRuntime
import Testing

/// Headers are written by whoever produces to a topic. None of them may stop a consumer, and none may decide
/// where a dead letter is replayed to.
@Suite struct HostileHeaderTests {
    static let longName = String(repeating: "h", count: 70_000)

    func consumed(_ topic: String = "orders", value: String = "not an event", headers: [KafkaHeader]) -> ConsumedMessage {
        ConsumedMessage(topic: topic, partition: 0, offset: 7, key: Array("customer-1".utf8), value: Array(value.utf8), headers: headers)
    }

    @Test func aHeaderNameTooLongForTheOutboxIsRefusedWithAnErrorNotATrap() {
        #expect(throws: HeaderCodec.TooLong.self) { try HeaderCodec.encode([KafkaHeader(Self.longName, "v")]) }
        let fits = [KafkaHeader(String(repeating: "n", count: Int(UInt16.max)), "v"), KafkaHeader("b", "")]
        #expect(HeaderCodec.decode(try! HeaderCodec.encode(fits)) == fits)
    }

    /// A 70,000-byte header name on a poison message crash-looped every group that dead-lettered it.
    @Test func aPoisonMessageWithAHugeHeaderNameIsDeadLetteredAndTheNextIsApplied() async throws {
        let fixture = try RuntimeFixture(partitions: 1)
        let database = try fixture.openDatabase()
        let poison = consumed(headers: [KafkaHeader("trace-note", "kept"), KafkaHeader(Self.longName, "x")]
            + (0..<100).map { KafkaHeader("repeated", String($0)) })
        let valid = try RuntimeFixture.orderPlaced(1, customers: 1)
        let next = ConsumedMessage(topic: "orders", partition: 0, offset: 8, key: valid.key, value: valid.value, headers: valid.headers)
        let outcome = try await fixture.processor().process([poison, next], in: database)
        #expect(outcome.deadLettered == 1 && outcome.applied == 1)
        let letter = try #require(try await database.read { db in try OutboxRow.fetchAll(db) }.map(\.message).first { $0.topic == "orders.dlq" })
        #expect(letter.headers.first == KafkaHeader("trace-note", "kept"))
        #expect(!letter.headers.contains { $0.name == Self.longName })
        #expect(letter.headers.count == DeadLetter.Limits.headers + 6)
        let reason = try #require(letter.headers.first { $0.name == DeadLetter.Header.reason }).value
        #expect(String(decoding: reason, as: UTF8.self).contains("38 of its headers not kept"))
    }

    @Test func deadLetteringDropsTheDLQHeadersTheOriginalCarried() {
        let forged = consumed(headers: [KafkaHeader("dlq-source-topic", "payments"), KafkaHeader("dlq-group", "someone"), KafkaHeader("kept", "1")])
        let letter = DeadLetter.message(for: forged, reason: "not an event", group: "payment-service")
        #expect(letter.topic == "orders.dlq")
        #expect(letter.headers.filter { $0.name == DeadLetter.Header.sourceTopic } == [KafkaHeader(DeadLetter.Header.sourceTopic, "orders")])
        #expect(letter.headers.filter { $0.name == DeadLetter.Header.group } == [KafkaHeader(DeadLetter.Header.group, "payment-service")])
        #expect(letter.headers.first == KafkaHeader("kept", "1"))
    }

    @Test func aReplayGoesOnlyToTheTopicWhoseDeadLetterTopicHoldsTheLetter() {
        let honest = DeadLetter.message(for: consumed(headers: [KafkaHeader("kept", "1")]), reason: "r", group: "g")
        let onDLQ = consumed("orders.dlq", headers: honest.headers)
        #expect(DeadLetter.original(of: onDLQ) == OutgoingMessage(topic: "orders", key: Array("customer-1".utf8),
                                                                   value: Array("not an event".utf8), headers: [KafkaHeader("kept", "1")]))
        // Written straight to a dead-letter topic, naming another topic: not replayed anywhere.
        let forged = consumed("orders.dlq", headers: [KafkaHeader(DeadLetter.Header.sourceTopic, "payments")])
        #expect(DeadLetter.original(of: forged) == nil)
        // The consumer's headers are the last ones: an earlier one of the same name does not count.
        let shadowed = consumed("orders.dlq", headers: [KafkaHeader(DeadLetter.Header.sourceTopic, "payments"), KafkaHeader(DeadLetter.Header.sourceTopic, "orders")])
        #expect(DeadLetter.original(of: shadowed)?.topic == "orders")
        #expect(DeadLetter.original(of: consumed("orders", headers: honest.headers)) == nil, "not on a dead-letter topic")
    }

    @Test func aReasonIsCappedAndSaysHowMuchWasCut() {
        let reason = DeadLetter.capped(String(repeating: "r", count: 900_000))
        #expect(reason.count < DeadLetter.Limits.reasonCharacters + 50)
        #expect(reason.hasSuffix("(899000 more characters)"))
    }
}
