import Foundation
import Logging
import Synchronization

/// An exclusive advisory lock (`flock`) on a file beside the database, for work that only one of the instances
/// sharing the database may do: the outbox relay, notification-service's mail delivery. The kernel drops the
/// lock when its holder's process dies, so a waiting instance takes over at once.
public final class Lease: Sendable {
    private let descriptor: Int32

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    /// Waits, on a spare thread blocked in `flock`, until this process holds the lease; nil if cancelled first.
    public static func acquire(at path: String, logger: Logger) async throws -> Lease? {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw LeaseError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        if flock(descriptor, LOCK_EX | LOCK_NB) == 0 { return Lease(descriptor: descriptor) }
        logger.info("another instance holds \((path as NSString).lastPathComponent); standing by")
        let wait = LeaseWait()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                wait.start(continuation)
                Thread.detachNewThread {
                    let acquired = flock(descriptor, LOCK_EX) == 0
                    if !wait.finish(with: acquired ? Lease(descriptor: descriptor) : nil) {
                        // The wait was cancelled: give the lock (if taken) straight back.
                        close(descriptor)
                    }
                }
            }
        } onCancel: {
            wait.finish(with: nil)
        }
    }

    public func release() {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}

enum LeaseError: Error, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)

    var description: String {
        switch self {
        case .cannotOpen(let path, let reason): "cannot open the relay lease \(path): \(reason)"
        }
    }
}

/// Resumes a lease wait exactly once: with the lease, or with nil when cancelled.
private final class LeaseWait: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<Lease?, Never>)
        case cancelledEarly
        case finished
    }

    private let state = Mutex(State.idle)

    func start(_ continuation: CheckedContinuation<Lease?, Never>) {
        let cancelled = state.withLock { state -> Bool in
            if case .cancelledEarly = state {
                state = .finished
                return true
            }
            state = .waiting(continuation)
            return false
        }
        if cancelled { continuation.resume(returning: nil) }
    }

    /// Returns whether this call delivered the result.
    @discardableResult
    func finish(with lease: Lease?) -> Bool {
        let continuation = state.withLock { state -> CheckedContinuation<Lease?, Never>? in
            switch state {
            case .waiting(let continuation):
                state = .finished
                return continuation
            case .idle:
                state = .cancelledEarly
                return nil
            case .cancelledEarly, .finished:
                return nil
            }
        }
        continuation?.resume(returning: lease)
        return continuation != nil && lease != nil
    }
}
