import Kafka
import Testing

/// A consumed message keeps key, value and headers in one buffer; what goes in must come out unchanged.
@Suite struct ConsumedMessageTests {
    @Test func keyValueAndHeadersComeBackAsGiven() {
        let headers = [
            KafkaHeader("event-type", "OrderPlaced"), KafkaHeader("empty", []), KafkaHeader("event-type", "Repeated"),
            KafkaHeader("größe", "ünïcode"), KafkaHeader("binary", [0, 255, 1, 254]),
        ]
        let message = ConsumedMessage(topic: "orders", partition: 3, offset: 42, key: Array("c-1".utf8),
                                      value: Array("{\"total\":1}".utf8), headers: headers, timestamp: 7)
        #expect(message.key.map(Array.init) == Array("c-1".utf8))
        #expect(message.keyString == "c-1")
        #expect(String(decoding: message.value, as: UTF8.self) == "{\"total\":1}")
        #expect(message.headers == headers)
        #expect(message.header("event-type") == "OrderPlaced", "the first of repeated names")
        #expect(message.header("größe") == "ünïcode")
        #expect(message.header("empty") == "")
        #expect(message.header("binary") == nil, "not UTF-8")
        #expect(message.header("event") == nil, "a prefix of a name is not the name")
        #expect(message.timestamp == 7 && message.offset == 42 && message.topicPartition == TopicPartition("orders", 3))
    }

    @Test func aMissingKeyIsNotAnEmptyOne() {
        let keyless = ConsumedMessage(topic: "t", partition: 0, offset: 0, key: nil, value: [1, 2])
        let empty = ConsumedMessage(topic: "t", partition: 0, offset: 0, key: [], value: [1, 2])
        #expect(keyless.key == nil && keyless.headers.isEmpty && Array(keyless.value) == [1, 2])
        #expect(empty.key.map(Array.init) == [])
        #expect(keyless != empty)
    }
}
