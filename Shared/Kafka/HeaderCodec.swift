import Foundation

/// A list of headers as bytes, for a message stored to be sent later (the transactional outbox): per header a
/// 2-byte name length, the name, a 4-byte value length, the value, big-endian.
public enum HeaderCodec {
    public struct TooLong: Error, CustomStringConvertible {
        public let description: String
    }

    /// Throws, rather than trapping, for a name or value longer than its length field can say: headers can come
    /// from any producer (a dead letter keeps the original's), and a trap would stop the service on every restart.
    public static func encode(_ headers: [KafkaHeader]) throws -> Data {
        var data = Data()
        for header in headers {
            let name = Array(header.name.utf8)
            guard let nameLength = UInt16(exactly: name.count), let valueLength = UInt32(exactly: header.value.count) else {
                throw TooLong(description: "a header is too long to store (\(name.count)-byte name, \(header.value.count)-byte value)")
            }
            append(nameLength, to: &data)
            data.append(contentsOf: name)
            append(valueLength, to: &data)
            data.append(contentsOf: header.value)
        }
        return data
    }

    public static func decode(_ data: Data) -> [KafkaHeader] {
        let bytes = Array(data)
        var headers: [KafkaHeader] = []
        var index = 0
        func read(_ count: Int) -> ArraySlice<UInt8>? {
            guard index + count <= bytes.count else { return nil }
            defer { index += count }
            return bytes[index..<index + count]
        }
        while let nameLength = read(2).map({ Int($0.reduce(0) { $0 << 8 | UInt32($1) }) }),
              let name = read(nameLength),
              let valueLength = read(4).map({ Int($0.reduce(0) { $0 << 8 | UInt32($1) }) }),
              let value = read(valueLength) {
            headers.append(KafkaHeader(String(decoding: name, as: UTF8.self), Array(value)))
        }
        return headers
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to data: inout Data) {
        withUnsafeBytes(of: value.bigEndian) { data.append(contentsOf: $0) }
    }
}
