import Foundation
import Synchronization

/// A dedicated OS thread for a blocking librdkafka loop, so that no poll ever occupies a Swift concurrency thread.
final class PollThread: Sendable {
    private let finished = DispatchSemaphore(value: 0)
    private let stopping = Atomic<Bool>(false)

    /// Starts `body`, which should return soon after `isStopping` turns true.
    init(name: String, body: @escaping @Sendable (PollThread) -> Void) {
        let thread = Thread { [self] in
            body(self)
            finished.signal()
        }
        thread.name = name
        thread.start()
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Asks the loop to return; `wake` should interrupt whatever blocking poll it is in.
    func requestStop(wake: () -> Void = {}) {
        stopping.store(true, ordering: .releasing)
        wake()
    }

    /// Waits on a spare thread, never on a Swift concurrency thread, for the loop to return.
    func join() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread { [finished] in
                finished.wait()
                finished.signal()
                continuation.resume()
            }
        }
    }
}

/// Runs a blocking call (an admin request, a synchronous commit) on a spare thread and awaits its result.
func offloaded<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try body() })
        }
    }
}
