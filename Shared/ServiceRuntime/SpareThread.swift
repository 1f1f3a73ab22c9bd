import Foundation

/// Runs blocking work (the network, `flock`, SMTP) on a thread of its own rather than one of the cooperative
/// pool's, which a blocked call would take from every task of the process.
public func onSpareThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: work()) }
    }
}
