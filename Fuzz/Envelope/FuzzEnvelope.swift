import DomainEvents
import Foundation
import FuzzSupport

#if FUZZING
@_cdecl("FuzzEnvelope_main") public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt { FuzzTarget.drive(argc, argv, check) }
#else
@main enum Replay { static func main() { FuzzTarget.replay(check) } }
#endif

/// Any bytes as a message's value: the envelope reader never traps; what the fast reader accepts, `JSONDecoder`
/// reads to the same envelope; whatever decodes, the writer writes back to the same envelope.
func check(_ bytes: [UInt8]) -> String? {
    let plain = EnvelopeJSON.decodePlain(bytes)
    if let plain {
        guard let coded = try? JSONDecoder().decode(Envelope.self, from: Data(bytes)) else {
            return "the plain reader accepted what JSONDecoder refuses"
        }
        guard coded == plain else { return "the plain reader and JSONDecoder disagree: \(plain) / \(coded)" }
    }
    guard let envelope = try? EnvelopeJSON.decode(bytes) else { return nil }
    _ = envelope.event.valueViolation
    guard let again = try? EnvelopeJSON.decode(EnvelopeJSON.encode(envelope)), again == envelope else {
        return "the writer did not write \(envelope) back as it was"
    }
    return nil
}
