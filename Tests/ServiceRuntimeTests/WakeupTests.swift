import Foundation
import ServiceRuntime
import Testing

/// The relay's thread waits on a `Wakeup` that HTTP requests and the consumer's poll thread signal: no signal may
/// be lost, and none may count twice.
struct WakeupTests {
    @Test func aSignalBeforeTheWaitIsKeptForIt() {
        let wakeup = Wakeup()
        wakeup.signal()
        let started = ContinuousClock.now
        wakeup.waitBlocking(upTo: .seconds(60))
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test func aSignalFromAnotherThreadEndsTheWait() async {
        let wakeup = Wakeup()
        let waited = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let started = ContinuousClock.now
                wakeup.waitBlocking(upTo: .seconds(60))
                continuation.resume(returning: ContinuousClock.now - started)
            }
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 0.05)
                wakeup.signal()
            }
        }
        #expect(waited < .seconds(30), "the signal did not end the wait")
    }

    @Test func aWaitThatTimedOutLeavesNoSignalBehindAndMissesNone() {
        let wakeup = Wakeup()
        wakeup.waitBlocking(upTo: .milliseconds(10))
        wakeup.signal()
        wakeup.signal()
        var started = ContinuousClock.now
        wakeup.waitBlocking(upTo: .seconds(60))
        #expect(ContinuousClock.now - started < .seconds(30), "the signals after the timeout were lost")
        // Two signals with no one waiting are one wake-up: the next wait runs to its end.
        started = ContinuousClock.now
        wakeup.waitBlocking(upTo: .milliseconds(200))
        #expect(ContinuousClock.now - started >= .milliseconds(200), "a signal counted twice")
    }
}
