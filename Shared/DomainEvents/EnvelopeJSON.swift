import Foundation

/// An envelope as the JSON value of its message (docs/contract.md, "The envelope"): written by
/// `PlainEnvelopeWriter`, read by `PlainEnvelopeReader` and, for whatever that leaves, by `JSONDecoder`, which
/// decides and words the error.
public enum EnvelopeJSON {
    /// Shared: it is thread-safe, and making one per event shows in profiles.
    private static let decoder = JSONDecoder()

    public static func encode(_ envelope: Envelope) -> [UInt8] {
        PlainEnvelopeWriter.bytes(of: envelope)
    }

    /// The envelope in `bytes`, or why they are not one. Checks the JSON's shape and types, not the message it
    /// came in nor the contract's value rules (`Wire.decode` does those).
    public static func decode(_ bytes: ArraySlice<UInt8>) throws(EventDecodingError) -> Envelope {
        do {
            return try bytes.withUnsafeBytes(PlainEnvelopeReader.envelope(from:)) ?? decoder.decode(Envelope.self, from: Data(bytes))
        } catch let error as EventDecodingError {
            throw error
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
            throw .invalidJSON(context.underlyingError.map { "\($0)" } ?? context.debugDescription)
        } catch {
            throw .contractViolation(describe(error))
        }
    }

    /// The fast reader alone: nil where it leaves the bytes to `JSONDecoder`. For the tests and the fuzzer that
    /// hold it to `JSONDecoder`.
    public static func decodePlain(_ bytes: [UInt8]) -> Envelope? {
        bytes.withUnsafeBytes(PlainEnvelopeReader.envelope(from:))
    }

    public static func decode(_ bytes: [UInt8]) throws(EventDecodingError) -> Envelope {
        try decode(bytes[...])
    }

    private static func describe(_ error: Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing field \(path(context.codingPath + [key]))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "invalid field \(path(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    private static func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }
}
