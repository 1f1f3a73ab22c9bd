import Foundation

/// Event IDs as the contract defines them (docs/contract.md, "Event IDs are derived from their cause"). An event
/// caused by another event gets an ID derived from its cause, so reprocessing the cause (after a crash, from a
/// restored database, on replay) publishes the very same IDs, and consumers drop the copies as duplicates. Only
/// an event caused by an HTTP request, which has no event to derive from, gets a random ID.
public enum EventID {
    /// The UUID namespace of Emporium's derived event IDs.
    public static let namespace = UUID(uuidString: "6f1c2a4e-8b7d-4c3e-9a51-2d0e7f6b9c10")!

    /// The ID of the `index`-th event (from 0, in emission order) that `source` emitted for the event `causationId`.
    public static func derived(source: String, causationId: String, index: Int) -> String {
        uuid5(name: "\(source)/\(causationId)/\(index)")
    }

    public static func random() -> String {
        UUID().uuidString.lowercased()
    }

    /// RFC 9562 version 5: the first 16 bytes of SHA-1 over the namespace and the name, version and variant set.
    public static func uuid5(name: String, in namespace: UUID = namespace) -> String {
        var input = withUnsafeBytes(of: namespace.uuid) { Array($0) }
        input.append(contentsOf: name.utf8)
        var bytes = Array(SHA1.digest(input).prefix(16))
        bytes[6] = (bytes[6] & 0x0f) | 0x50
        bytes[8] = (bytes[8] & 0x3f) | 0x80
        return bytes.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }.uuidString.lowercased()
    }
}

/// SHA-1 (FIPS 180-4), for version 5 UUIDs only: not for anything that needs a secure hash. Written here because
/// swift-crypto would add a whole BoringSSL to every build of every service for this one function.
enum SHA1 {
    static func digest(_ message: [UInt8]) -> [UInt8] {
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
        var padded = message
        padded.append(0x80)
        while padded.count % 64 != 56 { padded.append(0) }
        withUnsafeBytes(of: (UInt64(message.count) * 8).bigEndian) { padded.append(contentsOf: $0) }
        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: padded.count, by: 64) {
            for i in 0..<16 {
                w[i] = (0..<4).reduce(0) { $0 << 8 | UInt32(padded[chunk + 4 * i + $1]) }
            }
            for i in 16..<80 {
                let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                w[i] = x << 1 | x >> 31
            }
            var (a, b, c, d, e) = h
            for i in 0..<80 {
                let (f, k): (UInt32, UInt32) = switch i {
                case 0..<20: ((b & c) | (~b & d), 0x5A82_7999)
                case 20..<40: (b ^ c ^ d, 0x6ED9_EBA1)
                case 40..<60: ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
                default: (b ^ c ^ d, 0xCA62_C1D6)
                }
                let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[i]
                (e, d, c, b, a) = (d, c, b << 30 | b >> 2, a, temp)
            }
            h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
        }
        return [h.0, h.1, h.2, h.3, h.4].flatMap { value in withUnsafeBytes(of: value.bigEndian) { Array($0) } }
    }
}
