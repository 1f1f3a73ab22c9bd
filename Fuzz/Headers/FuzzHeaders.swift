import Foundation
import FuzzSupport
import Kafka

#if FUZZING
@_cdecl("FuzzHeaders_main") public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt { FuzzTarget.drive(argc, argv, check) }
#else
@main enum Replay { static func main() { FuzzTarget.replay(check) } }
#endif

/// Any bytes as an outbox row's stored headers: decoding never traps, and what it decodes is stored again (or
/// refused with an error, never a trap) and reads back the same.
func check(_ bytes: [UInt8]) -> String? {
    let headers = HeaderCodec.decode(Data(bytes))
    guard let stored = try? HeaderCodec.encode(headers) else { return nil }
    let again = HeaderCodec.decode(stored)
    return again == headers ? nil : "\(headers.count) headers read back as \(again.count) different ones"
}
