import MicroSSECore
import MicroSSEWire
import Testing

@Suite("Subscriber queue state machine")
struct SubscriberQueueTests {
    @Test("queued frames are read in order, several per call, split at any max")
    func queuedFramesAreReadInOrderSeveralPerCallSplitAtAnyMax() {
        for max in [1, 3, 7, 64] {
            var q = SubscriberQueue(limit: 1 << 10)
            #expect(q.enqueue(frame("data: a\n\n")) == .none)
            #expect(q.enqueue(frame(": hb\n\n", isEvent: false)) == .none)
            #expect(q.enqueue(frame("data: bb\n\n")) == .none)
            var text: [UInt8] = []
            var events = 0
            while case .wrote(let n, let e) = q.read(max: max, write: { text += $0 }) {
                #expect(n <= max)
                events += e
            }
            #expect(String(decoding: text, as: UTF8.self) == "data: a\n\n: hb\n\ndata: bb\n\n")
            #expect(events == 2)
            #expect(q.pendingBytes == 0)
        }
    }

    @Test("an empty queue suspends and the next enqueue wakes it exactly once")
    func anEmptyQueueSuspendsAndTheNextEnqueueWakesItExactlyOnce() {
        var q = SubscriberQueue(limit: 1 << 10)
        #expect(q.read(max: 100) { _ in } == .suspend)
        #expect(q.waiting)
        #expect(q.enqueue(frame("data: 1\n\n")) == .wake)
        #expect(q.enqueue(frame("data: 2\n\n")) == .none)
        #expect(q.drain().text == "data: 1\n\ndata: 2\n\n")
    }

    @Test("a frame over the byte bound drops the queue and fails the stream")
    func aFrameOverTheByteBoundDropsTheQueueAndFailsTheStream() {
        var q = SubscriberQueue(limit: 20)
        #expect(q.enqueue(frame("data: 0123456\n\n")) == .none)
        #expect(q.enqueue(frame("data: 0123456\n\n")) == .overflow(wake: false))
        #expect(q.dropped)
        #expect(q.pendingBytes == 0)
        #expect(q.read(max: 100) { _ in Issue.record("nothing may be written after a drop") } == .abort)
        #expect(q.enqueue(frame("data: x\n\n")) == .closed)
    }

    @Test("an overflow while suspended asks for a wake so the reader can close")
    func anOverflowWhileSuspendedAsksForAWakeSoTheReaderCanClose() {
        var q = SubscriberQueue(limit: 10)
        #expect(q.read(max: 100) { _ in } == .suspend)
        #expect(q.enqueue(frame("data: 0123456789\n\n")) == .overflow(wake: true))
        #expect(q.read(max: 100) { _ in } == .abort)
    }

    @Test("finish writes what is queued, then ends") func finishWritesWhatIsQueuedThenEnds() {
        var q = SubscriberQueue(limit: 1 << 10)
        _ = q.enqueue(frame("data: last\n\n"))
        #expect(q.finish() == false)
        #expect(q.enqueue(frame("data: late\n\n")) == .closed)
        let (text, last) = q.drain()
        #expect(text == "data: last\n\n")
        #expect(last == .end)
    }

    @Test("finish resumes a suspended stream") func finishResumesASuspendedStream() {
        var q = SubscriberQueue(limit: 1 << 10)
        #expect(q.read(max: 100) { _ in } == .suspend)
        #expect(q.finish() == true)
        #expect(q.read(max: 100) { _ in } == .end)
        #expect(q.finish() == false)
    }

    // That a queued heartbeat is not activity (an idle stream would get one only every other
    // pass) is the subscriber's business: HeartbeatSlotsTests.readerOnlyEveryPass checks it.
    @Test("a heartbeat queued on an idle stream asks for a resume every time, and is a stall when unread")
    func aQueuedHeartbeatWakesEveryTime() {
        var q = SubscriberQueue(limit: 1 << 10)
        let hb = frame(":\n\n", isEvent: false)
        for _ in 0..<4 {
            #expect(q.read(max: 100) { _ in } == .suspend)
            #expect(q.heartbeat(hb) == .heartbeat(wake: true))
            #expect(q.drain().text == ":\n\n")
        }
        _ = q.heartbeat(hb)
        #expect(q.tick(stallTicks: 1) == .none)  // the reads before it were progress
        #expect(q.tick(stallTicks: 1) == .none)  // the heartbeat first seen unread
        #expect(q.tick(stallTicks: 1) == .stalled(wake: false), "an unread heartbeat is a stall like any byte")
    }

    @Test("no heartbeat is queued behind pending bytes, or on a closed stream")
    func noHeartbeatBehindPendingBytes() {
        var q = SubscriberQueue(limit: 1 << 10)
        let hb = frame(":\n\n", isEvent: false)
        _ = q.enqueue(frame("data: x\n\n"))
        #expect(q.heartbeat(hb) == .none)
        _ = q.drain()
        #expect(q.heartbeat(hb) == .heartbeat(wake: true), "drained: suspended, so it must be resumed")
        _ = q.drain()
        _ = q.finish()
        #expect(q.heartbeat(hb) == .none)
    }

    // Regression: a stall was reported on the `stallTicks`-th tick counting the one that first
    // saw the pending bytes, so `writeTimeoutSeconds = 30` with 15 s ticks dropped a peer after
    // as little as 15 s. Now it takes `stallTicks` whole ticks after the first sighting.
    @Test("a stall is reported only after stallTicks whole ticks without progress")
    func aStallIsReportedOnlyAfterStallTicksWholeTicksWithoutProgress() {
        var q = SubscriberQueue(limit: 1 << 10)
        _ = q.enqueue(frame("data: stuck\n\n"))
        #expect(q.tick(stallTicks: 2) == .none)  // first seen
        #expect(q.tick(stallTicks: 2) == .none)  // one whole tick
        #expect(q.tick(stallTicks: 2) == .stalled(wake: false))  // two whole ticks
        #expect(q.dropped)
        #expect(q.read(max: 100) { _ in } == .abort)
    }

    @Test("progress between ticks resets the stall count") func progressBetweenTicksResetsTheStallCount() {
        var q = SubscriberQueue(limit: 1 << 10)
        for _ in 0..<5 {
            _ = q.enqueue(frame("data: 0123456789\n\n"))
            _ = q.enqueue(frame("data: 0123456789\n\n"))
            #expect(q.tick(stallTicks: 1) == .none)
            _ = q.read(max: 5) { _ in }  // a slow reader still makes progress
        }
        #expect(q.tick(stallTicks: 1) == .none)
        #expect(!q.dropped)
    }

    @Test("stallTicks 0 never reports a stall") func stallticks0NeverReportsAStall() {
        var q = SubscriberQueue(limit: 1 << 10)
        _ = q.enqueue(frame("data: x\n\n"))
        for _ in 0..<100 { #expect(q.tick(stallTicks: 0) == .none) }
    }

    @Test("freeBytes is what may still be queued") func freebytesIsWhatMayStillBeQueued() {
        var q = SubscriberQueue(limit: 100)
        _ = q.enqueue(frame("0123456789"))
        #expect(q.freeBytes == 90)
        _ = q.finish()
        #expect(q.freeBytes == 0)
    }
}

@Suite("Subscriber")
struct SubscriberTests {
    // Regression: the transport's free callback called `fail()`, which resumes a connection it
    // believes suspended; from the free callback that would resume a connection being freed.
    @Test("detach closes the stream without waking the connection")
    func detachClosesTheStreamWithoutWakingTheConnection() {
        let sub = Subscriber(channels: ["a"], limit: 1 << 10)
        let wakes = WakeCounter()
        wakes.install(on: sub)
        #expect(sub.read(max: 100, write: { _ in }, onSuspend: {}) == .suspend)
        sub.detach()
        #expect(wakes.value == 0)
        #expect(sub.enqueue(frame("data: x\n\n")) == .closed)
        #expect(!sub.isOpen)
        #expect(!sub.wasDropped)
    }

    @Test("enqueue wakes a suspended stream once; onSuspend runs under the lock")
    func enqueueWakesASuspendedStreamOnceOnSuspendRunsUnderTheLock() {
        let sub = Subscriber(channels: ["a"], limit: 1 << 10)
        let wakes = WakeCounter()
        wakes.install(on: sub)
        var suspended = 0
        #expect(sub.read(max: 100, write: { _ in }, onSuspend: { suspended += 1 }) == .suspend)
        #expect(suspended == 1)
        sub.enqueue(frame("data: 1\n\n"))
        sub.enqueue(frame("data: 2\n\n"))
        #expect(wakes.value == 1)
        #expect(sub.receivedEvents().map(\.data) == ["1", "2"])
    }

    @Test("a heartbeat queued on a suspended idle stream asks for its resume; a stalled stream is failed")
    func tickWakesASuspendedIdleStreamForItsHeartbeatAndFailsAStalledOne() {
        let sub = Subscriber(channels: ["a"], limit: 1 << 10)
        let wakes = WakeCounter()
        wakes.install(on: sub)
        #expect(sub.read(max: 100, write: { _ in }, onSuspend: {}) == .suspend)
        #expect(sub.queueHeartbeat(frame(":\n\n", isEvent: false)) == .heartbeat(wake: true))
        #expect(wakes.value == 0, "the heartbeat pass resumes its streams itself, back to back")
        sub.wake()
        #expect(wakes.value == 1)
        // The heartbeat is never read: after one whole tick the stream is stalled.
        #expect(sub.tick(stallTicks: 1) == .none)
        #expect(sub.tick(stallTicks: 1) == .stalled(wake: false))
        #expect(sub.wasDropped)
    }
}
