import Synchronization

/// What tests use to wait: on conditions with timeouts, never on sleeps as synchronisation.

public struct TimedOut: Error, CustomStringConvertible {
    public let what: String
    public var description: String { "timed out waiting for \(what)" }

    public init(what: String) { self.what = what }
}

/// Checks `condition` every few milliseconds until it holds; throws `TimedOut` after `limit`. A check that
/// throws is retried (a service restarting, a database busy for a moment) until the limit, which then reports
/// the last error.
public func waitUntil(_ limit: Duration, _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    var lastError: (any Error)?
    while true {
        do {
            if try await condition() { return }
            lastError = nil
        } catch {
            lastError = error
        }
        guard ContinuousClock.now < deadline else {
            throw TimedOut(what: what + (lastError.map { " (last check failed: \($0))" } ?? ""))
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// Runs `body`, throwing `TimedOut` once `limit` has passed, even if `body` cannot be cancelled and never
/// returns: the caller goes on (and cleans up what it started), the stuck body is abandoned.
public func within<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let settled = Once()
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
        let work = Task {
            let result = await Result(catching: body)
            if settled.claim() { continuation.resume(with: result) }
        }
        Task {
            try? await Task.sleep(for: limit)
            if settled.claim() {
                work.cancel()
                continuation.resume(throwing: TimedOut(what: what))
            }
        }
    }
}

/// True for the first caller only.
final class Once: Sendable {
    private let taken = Atomic<Bool>(false)

    func claim() -> Bool {
        taken.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
