import DomainEvents
import Foundation
import Kafka
import ServiceRuntime
import Testing

@Suite struct WireTests {
    static let golden = """
    {"eventId":"6f1c2b9e-3a4d-4e5f-8a7b-9c0d1e2f3a4b","type":"OrderPlaced","version":1,"key":"customer-42",\
    "sequence":3,"correlationId":"order-7","causationId":null,"occurredAt":"2026-11-23T10:15:30.123Z",\
    "source":"order-service","data":{"orderId":"order-7","customerId":"customer-42",\
    "lines":[{"productId":"product-1","quantity":2,"unitPriceCents":1250}],"totalCents":2500,"currency":"EUR"}}
    """

    static let goldenEnvelope = Envelope(
        eventId: "6f1c2b9e-3a4d-4e5f-8a7b-9c0d1e2f3a4b", key: "customer-42", sequence: 3, correlationId: "order-7",
        causationId: nil, occurredAt: "2026-11-23T10:15:30.123Z", source: "order-service",
        event: .orderPlaced(OrderPlaced(
            orderId: "order-7", customerId: "customer-42",
            lines: [OrderLine(productId: "product-1", quantity: 2, unitPriceCents: 1250)], totalCents: 2500, currency: "EUR")))

    static func consumed(_ value: String, type: String? = "OrderPlaced", version: String? = "1", key: String = "customer-42", topic: String = "orders") -> ConsumedMessage {
        var headers: [KafkaHeader] = []
        if let type { headers.append(KafkaHeader("event-type", type)) }
        if let version { headers.append(KafkaHeader("event-version", version)) }
        return ConsumedMessage(topic: topic, partition: 0, offset: 0, key: Array(key.utf8), value: Array(value.utf8), headers: headers)
    }

    @Test func theGoldenOrderPlacedDecodesToItsEnvelope() throws {
        #expect(try Wire.decode(Self.consumed(Self.golden)) == Self.goldenEnvelope)
    }

    @Test func anEnvelopeEncodesToTheGoldenJSON() throws {
        let encoded = try JSONSerialization.jsonObject(with: Data(try Wire.encode(Self.goldenEnvelope))) as? NSDictionary
        let golden = try JSONSerialization.jsonObject(with: Data(Self.golden.utf8)) as? NSDictionary
        #expect(encoded == golden)
    }

    @Test func theMessageCarriesTopicKeyAndRoutingHeaders() throws {
        let message = try Wire.message(for: Self.goldenEnvelope, traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        #expect(message.topic == "orders")
        #expect(message.key == Array("customer-42".utf8))
        #expect(message.headers.map(\.name) == ["event-type", "event-version", "event-id", "traceparent"])
        #expect(message.headers[0].value == Array("OrderPlaced".utf8))
        #expect(message.headers[2].value == Array("6f1c2b9e-3a4d-4e5f-8a7b-9c0d1e2f3a4b".utf8))
    }

    static let everyEvent: [DomainEvent] = [
        .orderPlaced(OrderPlaced(orderId: "o", customerId: "c", lines: [OrderLine(productId: "p", quantity: 1, unitPriceCents: 1)], totalCents: 1, currency: "EUR")),
        .orderConfirmed(OrderConfirmed(orderId: "o", customerId: "c", totalCents: 1)),
        .orderCancelled(OrderCancelled(orderId: "o", customerId: "c", reason: .paymentDeclined, detail: "insufficient-credit")),
        .paymentAuthorized(PaymentAuthorized(orderId: "o", customerId: "c", paymentId: "pay", amountCents: 1, currency: "EUR")),
        .paymentDeclined(PaymentDeclined(orderId: "o", customerId: "c", reason: "insufficient-credit")),
        .paymentCaptured(PaymentCaptured(orderId: "o", customerId: "c", paymentId: "pay", amountCents: 1, currency: "EUR")),
        .paymentRefunded(PaymentRefunded(orderId: "o", customerId: "c", paymentId: "pay", amountCents: 1, currency: "EUR")),
        .stockReserved(StockReserved(productId: "p", orderId: "o", quantity: 1, available: 9, lineCount: 1)),
        .stockShortage(StockShortage(productId: "p", orderId: "o", requested: 5, available: 2)),
        .stockReleased(StockReleased(productId: "p", orderId: "o", quantity: 1, available: 10)),
        .stockRestocked(StockRestocked(productId: "p", quantity: 5, available: 15)),
        .notificationSent(NotificationSent(notificationId: "n", orderId: "o", customerId: "c", kind: .orderConfirmed, channel: "email", messageId: "<m@emporium>")),
    ]

    @Test(arguments: everyEvent)
    func everyEventRoundTripsOnItsTopicWithItsKey(event: DomainEvent) throws {
        let envelope = Envelope(eventId: UUID().uuidString.lowercased(), key: event.key, sequence: 1, correlationId: event.correlationId,
                                causationId: "c0ffee00-0000-4000-8000-000000000000", occurredAt: Timestamp.now(), source: "test", event: event)
        let message = try Wire.message(for: envelope, traceparent: nil)
        let expectedTopic: String = switch event {
        case .orderPlaced, .orderConfirmed, .orderCancelled: "orders"
        case .paymentAuthorized, .paymentDeclined, .paymentCaptured, .paymentRefunded: "payments"
        case .stockReserved, .stockShortage, .stockReleased, .stockRestocked: "inventory"
        case .notificationSent: "notifications"
        }
        #expect(message.topic == expectedTopic)
        let back = try Wire.decode(ConsumedMessage(topic: message.topic, partition: 0, offset: 0, key: message.key, value: message.value, headers: message.headers))
        #expect(back == envelope)
        if case .stockRestocked = event {
            #expect(!String(decoding: message.value, as: UTF8.self).contains("correlationId"))
        }
    }

    /// Values that decode as JSON but break the contract: each is refused, naming the field, without trapping.
    static let hostileValues: [(event: DomainEvent, correlationId: String?, reason: String)] = {
        func placed(orderId: String = "order-1", lines: [OrderLine] = [OrderLine(productId: "product-1", quantity: 1, unitPriceCents: 100)],
                    total: Int = 100) -> DomainEvent {
            .orderPlaced(OrderPlaced(orderId: orderId, customerId: "customer-1", lines: lines, totalCents: total, currency: "EUR"))
        }
        let long = String(repeating: "x", count: 300)
        return [
            (placed(lines: [OrderLine(productId: "product-1", quantity: .min, unitPriceCents: 100)], total: 100), "order-1", "lines[0].quantity"),
            (placed(lines: [OrderLine(productId: "product-1", quantity: 3, unitPriceCents: .max / 2)], total: .max - 1), "order-1", "lines[0].unitPriceCents"),
            (placed(lines: [OrderLine(productId: "product-1", quantity: 1_000_000, unitPriceCents: 1_000_000_000_000)], total: 0), "order-1", "not the lines' sum"),
            (placed(total: .max), "order-1", "totalCents"),
            (placed(lines: [OrderLine(productId: "product-1", quantity: 1, unitPriceCents: 100), OrderLine(productId: "product-1", quantity: 2, unitPriceCents: 100)], total: 300),
             "order-1", "two lines for product-1"),
            (placed(lines: [], total: 0), "order-1", "the number of lines"),
            (placed(orderId: "../../etc/passwd"), "../../etc/passwd", "orderId '../../etc/passwd'"),
            (placed(orderId: long), long, "orderId"),
            (placed(), "order-2", "correlationId 'order-2' is not the event's order 'order-1'"),
            (.paymentAuthorized(PaymentAuthorized(orderId: "order-1", customerId: "customer-1", paymentId: "pay-1", amountCents: -5, currency: "EUR")),
             "order-1", "amountCents -5"),
            (.paymentRefunded(PaymentRefunded(orderId: "order-1", customerId: "customer-1", paymentId: "pay-1", amountCents: 5, currency: "euro")),
             "order-1", "currency"),
            (.stockReleased(StockReleased(productId: "product-1", orderId: "order-1", quantity: 0, available: 5)), "order-1", "quantity 0"),
            (.stockRestocked(StockRestocked(productId: "product-1", quantity: 5, available: -1)), nil, "available -1"),
            (.orderCancelled(OrderCancelled(orderId: "order-1", customerId: "customer-1", reason: .outOfStock, detail: String(repeating: "d", count: 5_000))),
             "order-1", "detail"),
        ]
    }()

    @Test(arguments: 0..<hostileValues.count)
    func valuesTheContractForbidsAreRefusedNamingTheField(index: Int) throws {
        let (event, correlationId, reason) = Self.hostileValues[index]
        let envelope = Envelope(eventId: "6f1c2b9e-3a4d-4e5f-8a7b-9c0d1e2f3a4b", key: event.key, sequence: 1, correlationId: correlationId,
                                causationId: nil, occurredAt: "2026-11-23T10:15:30.123Z", source: "test", event: event)
        let message = try Wire.message(for: envelope, traceparent: nil)
        let consumed = ConsumedMessage(topic: message.topic, partition: 0, offset: 0, key: message.key, value: message.value, headers: message.headers)
        #expect {
            _ = try Wire.decode(consumed)
        } throws: { error in
            guard case EventDecodingError.contractViolation(let sentence) = error else { return false }
            return sentence.contains(reason)
        }
    }

    @Test func everyWellFormedEventKeepsToTheContractsValues() {
        for event in Self.everyEvent { #expect(event.valueViolation == nil, "\(event): \(event.valueViolation ?? "")") }
    }

    @Test func keysAreTheEntityTheEventIsAbout() {
        #expect(Self.everyEvent.map(\.key) == ["c", "c", "c", "o", "o", "o", "o", "p", "p", "p", "p", "c"])
    }

    @Test func decodingErrorsNameWhatIsWrong() {
        #expect(throws: EventDecodingError.missingHeader("event-type")) { try Wire.decode(Self.consumed(Self.golden, type: nil)) }
        #expect(throws: EventDecodingError.missingHeader("event-version")) { try Wire.decode(Self.consumed(Self.golden, version: nil)) }
        #expect(throws: EventDecodingError.unknownType("OrderLost")) { try Wire.decode(Self.consumed(Self.golden, type: "OrderLost")) }
        #expect(throws: EventDecodingError.unsupportedVersion(type: "OrderPlaced", version: "2")) { try Wire.decode(Self.consumed(Self.golden, version: "2")) }
        #expect { try Wire.decode(Self.consumed("{\"eventId\":")) } throws: { ($0 as? EventDecodingError).map { if case .invalidJSON = $0 { true } else { false } } ?? false }
        #expect { try Wire.decode(Self.consumed(Self.golden.replacingOccurrences(of: "\"totalCents\":2500,", with: ""))) } throws: { error in
            error as? EventDecodingError == .contractViolation("missing field data.totalCents")
        }
        #expect { try Wire.decode(Self.consumed(Self.golden, key: "customer-1")) } throws: { "\($0)".contains("differs from the message key") }
        #expect { try Wire.decode(Self.consumed(Self.golden, type: "OrderConfirmed")) } throws: { "\($0)".contains("the type field says OrderPlaced") }
        #expect { try Wire.decode(Self.consumed(Self.golden, topic: "payments")) } throws: { "\($0)".contains("belongs on orders") }
        let huge = Self.consumed(String(repeating: " ", count: 300_000) + Self.golden)
        #expect(throws: EventDecodingError.oversized(bytes: Wire.size(of: huge), limit: 262_144)) { try Wire.decode(huge) }
    }

    @Test func timestampsAreRFC3339UTCWithMilliseconds() {
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_795_400_000.5)) == "2026-11-23T02:13:20.500Z")
        #expect(Timestamp.isValid(Timestamp.now()))
        #expect(!Timestamp.isValid("2026-11-23T10:15:30Z"))
        #expect(Timestamp.parse("2026-11-23T02:13:20.500Z") == Date(timeIntervalSince1970: 1_795_400_000.5))
    }

    @Test func aChildSpanContinuesItsTrace() throws {
        let parent = try #require(TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
        let child = parent.child()
        #expect(child.traceId == "0af7651916cd43dd8448eb211c80319c")
        #expect(child.spanId != parent.spanId && child.spanId.count == 16)
        #expect(TraceContext(traceparent: "not-a-trace") == nil)
    }

    @Test func aTraceparentIsReadAsW3CWritesIt() throws {
        let upper = try #require(TraceContext(traceparent: "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-00"))
        #expect(upper.traceId == "0af7651916cd43dd8448eb211c80319c" && upper.spanId == "b7ad6b7169203331")
        #expect(upper.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        for invalid in [
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  // a version this reader does not know
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",  // the all-zero trace ID
            "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",   // a trace ID one digit short
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",  // not hexadecimal
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",   // flags one digit short
            "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            "",
        ] {
            #expect(TraceContext(traceparent: invalid) == nil, "\(invalid)")
        }
    }
}
