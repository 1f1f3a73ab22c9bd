@testable import DomainEvents
import Foundation
@testable import ServiceRuntime
import Testing

/// The writer replaces `JSONEncoder` on the outbox's path: `JSONDecoder` must read back exactly what was written,
/// whatever the text holds, and the fields come in the contract's order.
@Suite struct PlainEnvelopeWriterTests {
    @Test func jsonDecoderReadsEveryEventBackAsItWasWritten() throws {
        for envelope in PlainEnvelopeReaderTests.envelopes() {
            let bytes = PlainEnvelopeWriter.bytes(of: envelope)
            #expect(try JSONDecoder().decode(Envelope.self, from: Data(bytes)) == envelope, "\(String(decoding: bytes, as: UTF8.self))")
            // The same JSON as JSONEncoder's, member for member.
            let ours = try JSONSerialization.jsonObject(with: Data(bytes)) as? NSDictionary
            let theirs = try JSONSerialization.jsonObject(with: JSONEncoder().encode(envelope)) as? NSDictionary
            #expect(ours == theirs)
        }
    }

    @Test func textThatNeedsEscapingIsEscaped() throws {
        let awkward = "quote \" backslash \\ slash / tab \t newline \n nul \u{0} bell \u{7} ünïcödé ✓ 🛒 \u{7f}"
        let event = DomainEvent.orderCancelled(OrderCancelled(orderId: "o", customerId: "c", reason: .outOfStock, detail: awkward))
        let envelope = Envelope(eventId: "6f1c2b9e-3a4d-4e5f-8a7b-9c0d1e2f3a4b", key: event.key, sequence: 1, correlationId: "o",
                                causationId: nil, occurredAt: "2026-11-23T10:15:30.123Z", source: awkward, event: event)
        let bytes = PlainEnvelopeWriter.bytes(of: envelope)
        #expect(try JSONDecoder().decode(Envelope.self, from: Data(bytes)) == envelope)
        #expect(!bytes.contains { $0 < 0x20 }, "control characters are escaped")
        // The reader leaves escaped text to JSONDecoder, which Wire.decode then asks.
        #expect(PlainEnvelopeReaderTests.read(bytes) == nil)
    }

    @Test func fieldsComeInTheContractsOrder() {
        let text = String(decoding: PlainEnvelopeWriter.bytes(of: WireTests.goldenEnvelope), as: UTF8.self)
        #expect(text == WireTests.golden)
    }
}
