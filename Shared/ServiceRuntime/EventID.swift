import Crypto
import Foundation

/// Event IDs as the contract defines them (docs/contract.md, "Envelope"). An event caused by another event gets
/// an ID derived from its cause, so reprocessing the cause (after a crash, a restored database or a replay)
/// publishes the very same IDs, and consumers drop the copies as duplicates. Only an event caused by an HTTP
/// request, which has no event to derive from, gets a random ID.
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

    /// RFC 9562 version 5: SHA-1 of the namespace and the name, with the version and variant bits set.
    public static func uuid5(name: String, in namespace: UUID = namespace) -> String {
        var hash = Insecure.SHA1()
        withUnsafeBytes(of: namespace.uuid) { hash.update(bufferPointer: $0) }
        hash.update(data: Array(name.utf8))
        var bytes = Array(hash.finalize().prefix(16))
        bytes[6] = (bytes[6] & 0x0f) | 0x50
        bytes[8] = (bytes[8] & 0x3f) | 0x80
        let uuid = bytes.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }
        return uuid.uuidString.lowercased()
    }
}
