import Foundation

/// RFC 3339 UTC timestamps with milliseconds, as the envelope's `occurredAt` and the `dlq-failed-at` header carry.
public enum Timestamp {
    public static func now() -> String { format(Date()) }

    public static func format(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        // Written digit by digit: this runs for every event, and String(format:) costs microseconds.
        var text = [UInt8]()
        text.reserveCapacity(24)
        func digits(_ value: Int32, _ count: Int) {
            var divisor: Int32 = 1
            for _ in 1..<count { divisor *= 10 }
            while divisor > 0 {
                text.append(UInt8(48 + (value / divisor) % 10))
                divisor /= 10
            }
        }
        digits(parts.tm_year + 1900, 4); text.append(0x2d)
        digits(parts.tm_mon + 1, 2); text.append(0x2d)
        digits(parts.tm_mday, 2); text.append(0x54)
        digits(parts.tm_hour, 2); text.append(0x3a)
        digits(parts.tm_min, 2); text.append(0x3a)
        digits(parts.tm_sec, 2); text.append(0x2e)
        digits(Int32(milliseconds % 1000), 3); text.append(0x5a)
        return String(decoding: text, as: UTF8.self)
    }

    public static func isValid(_ text: String) -> Bool {
        parse(text) != nil
    }

    public static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        guard bytes.count == 24, bytes[4] == 0x2d, bytes[7] == 0x2d, bytes[10] == 0x54, bytes[13] == 0x3a,
              bytes[16] == 0x3a, bytes[19] == 0x2e, bytes[23] == 0x5a else { return nil }
        func number(_ range: Range<Int>) -> Int32? {
            var value: Int32 = 0
            for byte in bytes[range] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int32(byte - 0x30)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
              let minute = number(14..<16), let second = number(17..<19), let millisecond = number(20..<23),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        let seconds = timegm(&parts)
        return Date(timeIntervalSince1970: Double(seconds) + Double(millisecond) / 1000)
    }
}

/// W3C trace context: the trace an HTTP request starts and each event continues with a span of its own.
public struct TraceContext: Sendable, Hashable {
    public let traceId: String
    public let spanId: String

    /// A new trace, for a request that carried none.
    public static func newTrace() -> TraceContext {
        TraceContext(traceId: randomHex(bytes: 16), spanId: randomHex(bytes: 8))
    }

    /// Parses a `traceparent` header (`00-<trace-id>-<span-id>-<flags>`). Byte by byte: it runs for every event,
    /// and splitting the string into `Character`s cost more than the rest of the envelope's checks.
    public init?(traceparent: String) {
        let bytes = Array(traceparent.utf8)
        guard bytes.count == 55, bytes[0] == 0x30, bytes[1] == 0x30, bytes[2] == 0x2d, bytes[35] == 0x2d, bytes[52] == 0x2d,
              Self.isHex(bytes[53]), Self.isHex(bytes[54]) else { return nil }
        let trace = bytes[3..<35], span = bytes[36..<52]
        guard trace.allSatisfy(Self.isHex), span.allSatisfy(Self.isHex), trace.contains(where: { $0 != 0x30 }) else { return nil }
        traceId = String(decoding: trace.map(Self.lowercased), as: UTF8.self)
        spanId = String(decoding: span.map(Self.lowercased), as: UTF8.self)
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        (0x41...0x5a).contains(byte) ? byte + 0x20 : byte
    }

    init(traceId: String, spanId: String) {
        self.traceId = traceId
        self.spanId = spanId
    }

    /// A span for work caused by this one: same trace, new span ID.
    public func child() -> TraceContext {
        TraceContext(traceId: traceId, spanId: Self.randomHex(bytes: 8))
    }

    public var traceparent: String { "00-\(traceId)-\(spanId)-01" }

    private static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes / 8).map { _ in
            let hex = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }
}
