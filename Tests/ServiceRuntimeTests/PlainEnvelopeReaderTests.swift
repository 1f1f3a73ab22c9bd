import Catalogue
@testable import DomainEvents
import Foundation
import Kafka
@testable import ServiceRuntime
import Testing

/// The reader on the consumer's hot path must never disagree with `JSONDecoder`: what it reads, `JSONDecoder`
/// reads to the same envelope; what it cannot read, it leaves to `JSONDecoder`.
@Suite struct PlainEnvelopeReaderTests {
    static func envelopes() -> [Envelope] {
        WireTests.everyEvent.flatMap { event in
            [
                Envelope(eventId: "6f1c2b9e-3a4d-4e5f-8a7b-9c0d1e2f3a4b", key: event.key, sequence: 41, correlationId: event.correlationId,
                         causationId: "c0ffee00-0000-4000-8000-000000000000", occurredAt: "2026-11-23T10:15:30.123Z",
                         source: "inventory-service", event: event),
                // No causation (a placement), and text beyond ASCII.
                Envelope(eventId: "0a1b2c3d-3a4d-4e5f-8a7b-9c0d1e2f3a4b", key: event.key, sequence: 1, correlationId: event.correlationId,
                         causationId: nil, occurredAt: "2026-11-23T10:15:30.123Z", source: "Zürich-Service ✓", event: event),
            ]
        } + [WireTests.goldenEnvelope]
    }

    static func read(_ bytes: [UInt8]) -> Envelope? {
        bytes.withUnsafeBytes(PlainEnvelopeReader.envelope(from:))
    }

    @Test func everyEventTheWritersWriteIsReadAsJSONDecoderReadsIt() throws {
        for envelope in Self.envelopes() {
            let bytes = try Wire.encode(envelope)
            let plain = Self.read(bytes)
            #expect(plain == envelope, "\(String(decoding: bytes, as: UTF8.self))")
            #expect(plain == (try JSONDecoder().decode(Envelope.self, from: Data(bytes))))
        }
        #expect(Self.read(Array(WireTests.golden.utf8)) == WireTests.goldenEnvelope)
    }

    /// Damaged copies of every event, seeded: each byte changed, dropped or doubled, a byte put in, or the copy
    /// cut short. Wherever the reader returns an envelope, `JSONDecoder` must return the same one.
    @Test func whereverTheReaderReadsADamagedCopyJSONDecoderReadsTheSameEnvelope() throws {
        let alphabet = Array("\"\\{}[],:0123456789-+.eE nulltrf \t\nx".utf8) + [0x00, 0x1f, 0x7f, 0xc3, 0xa9, 0xff]
        var random = SeededRandom(seed: 20_261_202)
        var (read, agreed, refused) = (0, 0, 0)
        for envelope in Self.envelopes() {
            let original = try Wire.encode(envelope)
            for _ in 0..<1_500 {
                var bytes = original
                let at = Int(random.next() % UInt64(bytes.count))
                let byte = alphabet[Int(random.next() % UInt64(alphabet.count))]
                switch random.next() % 5 {
                case 0: bytes[at] = byte
                case 1: bytes.remove(at: at)
                case 2: bytes.insert(byte, at: at)
                case 3: bytes.insert(bytes[at], at: at)
                default: bytes.removeSubrange(at...)
                }
                guard let plain = Self.read(bytes) else {
                    refused += 1
                    continue
                }
                read += 1
                let decoded = try? JSONDecoder().decode(Envelope.self, from: Data(bytes))
                #expect(decoded == plain, "\(String(decoding: bytes, as: UTF8.self))")
                if decoded == plain { agreed += 1 }
            }
        }
        // Both outcomes must occur, or the comparison above proved nothing.
        #expect(read > 1_000 && refused > 10_000, "read \(read), refused \(refused)")
        #expect(agreed == read)
    }

    /// What the writers never write is left to JSONDecoder, which reads the valid ones and words the errors.
    @Test func formsBeyondThePlainOneAreLeftToJSONDecoder() throws {
        let golden = WireTests.golden
        let valid: [String] = [
            golden.replacingOccurrences(of: "\"order-7\"", with: "\"order\\u002d7\""),
            golden.replacingOccurrences(of: "\"sequence\":3", with: "\"sequence\":3.0"),
            golden.replacingOccurrences(of: "\"sequence\":3", with: "\"sequence\":3e0"),
            golden.replacingOccurrences(of: "\"source\"", with: "\"extra\":true,\"source\""),
            golden.replacingOccurrences(of: "\"currency\":\"EUR\"", with: "\"currency\":\"EUR\",\"note\":[1,{\"a\":[]}]"),
        ]
        for text in valid {
            #expect(Self.read(Array(text.utf8)) == nil, "\(text)")
            let envelope = try? Wire.decode(WireTests.consumed(text))
            #expect(envelope?.eventId == WireTests.goldenEnvelope.eventId, "\(text)")
        }
        // Invalid, or valid in ways the writers never write: the reader refuses them all, JSONDecoder decides.
        let others: [String] = [
            golden.replacingOccurrences(of: "\"sequence\":3", with: "\"sequence\":03"),
            golden.replacingOccurrences(of: "\"version\":1", with: "\"version\":1,\"version\":1"),
            golden.replacingOccurrences(of: "\"sequence\":3", with: "\"sequence\":12345678901234567890123"),
            golden + "x",
            "\u{FEFF}" + golden,
            String(repeating: "[", count: 100_000),
        ]
        for text in others {
            #expect(Self.read(Array(text.utf8)) == nil, "\(text.prefix(300))")
        }
    }
}
