import Foundation

/// Seconds `body` took, by the monotonic clock.
func secondsTaken(_ body: () async throws -> Void) async rethrows -> Double {
    let start = ContinuousClock.now
    try await body()
    return (ContinuousClock.now - start).seconds
}

func secondsTaken(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    return (ContinuousClock.now - start).seconds
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension Encodable {
    /// One line of JSON with sorted keys, for `--json` output that scripts can read.
    var jsonLine: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

extension Array where Element == Double {
    /// The nearest-rank percentile of a sorted array (0 when empty): the smallest value at or above a fraction `p`.
    func percentile(_ p: Double) -> Double {
        isEmpty ? 0 : self[Swift.min(count - 1, Int((Double(count) * p).rounded(.up)) - 1)]
    }

    /// The middle value, or the mean of the two middle values of an even count (0 when empty).
    var median: Double {
        let sorted = sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted.count % 2 == 1 ? sorted[count / 2] : (sorted[count / 2 - 1] + sorted[count / 2]) / 2
    }
}
