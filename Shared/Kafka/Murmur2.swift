/// Kafka's default partitioner, bit for bit as the Java client computes it, so any client agrees on where a key lives.
public enum Murmur2 {
    /// Java's `Utils.murmur2`: 32-bit MurmurHash2 with Kafka's seed.
    public static func hash(_ data: some Collection<UInt8>) -> Int32 {
        let bytes = Array(data)
        let m: UInt32 = 0x5bd1_e995
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: bytes.count)
        let whole = bytes.count / 4
        for block in 0..<whole {
            let i = block * 4
            var k = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
            k = k &* m
            k ^= k >> 24
            k = k &* m
            h = h &* m
            h ^= k
        }
        let tail = whole * 4
        let remainder = bytes.count % 4
        if remainder == 3 { h ^= UInt32(bytes[tail + 2]) << 16 }
        if remainder >= 2 { h ^= UInt32(bytes[tail + 1]) << 8 }
        if remainder >= 1 {
            h ^= UInt32(bytes[tail])
            h = h &* m
        }
        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    /// The partition Kafka's default partitioner picks: `toPositive(murmur2(key)) % partitionCount`.
    public static func partition(for key: some Collection<UInt8>, partitionCount: Int32) -> Int32 {
        (hash(key) & 0x7fff_ffff) % partitionCount
    }

    public static func partition(for key: String, partitionCount: Int32) -> Int32 {
        partition(for: Array(key.utf8), partitionCount: partitionCount)
    }
}
