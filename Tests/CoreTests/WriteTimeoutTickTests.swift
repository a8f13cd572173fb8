import MicroSSECore
import MicroSSEWire
import Testing

/// The write timeout's delay, in simulated time: the ticker's stall pass
/// (``Subscriber/visitPending(_:stallTicks:)`` with `writeTimeoutSeconds * Ticker.ticksPerSecond`
/// ticks, as ``Ticker`` calls it) driven tick by tick, with no clock. Tick `n` after the peer
/// stops reading comes between `(n - 1) / ticksPerSecond` and `n / ticksPerSecond` seconds after
/// the stop, depending on where the stop falls between two ticks; the stream must be failed no
/// sooner than the timeout at the earliest and no later than the timeout + 1 s at the latest.
/// Whole-second ticks failed the stream of a peer whose last read came just after a tick up to
/// 5 s after it for a 3 s timeout (the tick after that read sees it as progress and only the
/// next one starts the count).
@Suite("Write timeout: a stalled stream is failed between the timeout and the timeout + 1 s")
struct WriteTimeoutTickTests {
    /// The ticker's stall watch for `writeTimeoutSeconds`, as ``Ticker`` sets it up.
    private func stallTicks(_ writeTimeoutSeconds: Int) -> Int {
        writeTimeoutSeconds * Ticker.ticksPerSecond
    }

    /// Ticks the stall pass over `set` until `sub` is failed; returns the tick that failed it
    /// (nil when it was still open after `limit` ticks).
    private func ticksUntilFailed(_ sub: Subscriber, _ set: PendingStreams, stallTicks: Int, limit: Int) -> Int? {
        for tick in 1...limit {
            Subscriber.visitPending(set, stallTicks: stallTicks)
            if !sub.isOpen { return tick }
        }
        return nil
    }

    /// Checks that tick `tick` after the stop falls between the timeout and the timeout + 1 s.
    private func expectWithinBound(_ tick: Int?, timeout: Int, _ what: String) {
        guard let tick else {
            Issue.record("\(what): never failed (write timeout \(timeout) s)")
            return
        }
        let perSecond = Double(Ticker.ticksPerSecond)
        // The stop just before a tick: the earliest the failing tick can come after it.
        let earliest = Double(tick - 1) / perSecond
        // The stop just after a tick: the latest.
        let latest = Double(tick) / perSecond
        #expect(
            earliest >= Double(timeout),
            "\(what): failed as soon as \(earliest) s after the stop, write timeout \(timeout) s")
        #expect(
            latest <= Double(timeout + 1),
            "\(what): failed as late as \(latest) s after the stop, write timeout \(timeout) s")
    }

    @Test(
        "a peer that stops reading after taking bytes is failed no later than the write timeout + 1 s, not before it",
        arguments: Array(1...30))
    func stallAfterProgressFailedWithinOneSecondOfTheTimeout(timeout: Int) {
        let set = PendingStreams()
        let sub = Subscriber(channels: ["c"], limit: 1 << 20, pending: set)
        sub.setCloser {}
        // The peer's last read: the first frame goes out whole (progress the next tick sees).
        sub.enqueue(frame("data: read\n\n"))
        #expect(sub.read(max: 4_096, write: { _ in }, onSuspend: {}) == .wrote(bytes: 12, events: 1))
        // Then it stops reading: the next frame is queued and never read.
        sub.enqueue(frame("data: never read\n\n"))
        #expect(set.count == 1, "bytes pending: watched by the stall pass")
        let ticks = stallTicks(timeout)
        let failed = ticksUntilFailed(sub, set, stallTicks: ticks, limit: ticks + 4 * Ticker.ticksPerSecond)
        expectWithinBound(failed, timeout: timeout, "a peer stopping after a read")
        #expect(sub.wasDropped)
    }

    @Test(
        "a peer that never reads a frame queued for it is failed no later than the write timeout + 1 s, not before it",
        arguments: Array(1...30))
    func frameNeverReadFailedWithinOneSecondOfTheTimeout(timeout: Int) {
        let set = PendingStreams()
        let sub = Subscriber(channels: ["c"], limit: 1 << 20, pending: set)
        sub.setCloser {}
        sub.enqueue(frame("data: never read\n\n"))
        #expect(set.count == 1, "bytes pending: watched by the stall pass")
        let ticks = stallTicks(timeout)
        let failed = ticksUntilFailed(sub, set, stallTicks: ticks, limit: ticks + 4 * Ticker.ticksPerSecond)
        expectWithinBound(failed, timeout: timeout, "a frame never read")
        #expect(sub.wasDropped)
    }
}
