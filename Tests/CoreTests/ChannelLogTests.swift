import Dispatch
import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

/// The per-channel log: one append per publish, a cursor per reader.
@Suite("Channel log")
struct ChannelLogTests {
    /// Publishes `frame` to `readers` as the in-memory broker does.
    func publish(_ frame: Frame, to log: ChannelLog, readers: [Subscriber]) {
        var fanOut = LogFanOut()
        fanOut.append(frame, to: log, readers: readers)
        fanOut.finish()
    }

    /// A subscriber of channel `c` alone, reading `log`.
    func reader(of log: ChannelLog, limit: Int = 1 << 16, pending: PendingStreams? = nil) -> Subscriber {
        let sub = Subscriber(channels: ["c"], limit: limit, pending: pending)
        sub.attach(log: log)
        return sub
    }

    func readText(_ sub: Subscriber, max: Int = 4_096) -> (String, SubscriberQueue.ReadAction) {
        var bytes: [UInt8] = []
        var last = sub.read(max: max, write: { bytes += $0 }, onSuspend: {})
        while case .wrote = last { last = sub.read(max: max, write: { bytes += $0 }, onSuspend: {}) }
        return (String(decoding: bytes, as: UTF8.self), last)
    }

    @Test("every reader reads each frame of one append, in order, and the log lets go of what all have read")
    func readersShareOneAppend() {
        let log = ChannelLog()
        let readers = (0..<50).map { _ in reader(of: log) }
        for i in 0..<10 { publish(frame("data: \(i)\n\n"), to: log, readers: readers) }
        #expect(log.heldFrames == 10)
        let expected = (0..<10).map { "data: \($0)\n\n" }.joined()
        // Small reads split frames across calls: the cursor resumes inside a frame.
        for r in readers { #expect(readText(r, max: 7) == (expected, .suspend)) }
        publish(frame("data: last\n\n"), to: log, readers: readers)
        #expect(log.heldFrames == 1, "frames every reader passed are dropped at the next append")
    }

    @Test("a stream finished before it joins a log reads nothing of it; a failed one does not join")
    func joinAfterFinish() {
        let log = ChannelLog()
        let finishing = Subscriber(channels: ["c"], limit: 1 << 16)
        finishing.enqueue(frame("data: mine\n\n"))
        finishing.finish()
        finishing.attach(log: log)  // a resume that reached its log after the stream was closed
        publish(frame("data: later\n\n"), to: log, readers: [finishing])
        #expect(readText(finishing) == ("data: mine\n\n", .end))
        let failed = Subscriber(channels: ["c"], limit: 1 << 16)
        failed.fail()
        failed.attach(log: log)
        #expect(failed.logView.position == 0 && failed.pendingBytes == 0)
        publish(frame("data: more\n\n"), to: log, readers: [failed])
        #expect(log.heldFrames <= 1, "a failed stream holds no frame of the log")
    }

    @Test("a reader that arrives later starts at the log's end")
    func lateReaderStartsAtEnd() {
        let log = ChannelLog()
        let first = reader(of: log)
        publish(frame("data: a\n\n"), to: log, readers: [first])
        let late = reader(of: log)
        publish(frame("data: b\n\n"), to: log, readers: [first, late])
        #expect(readText(first).0 == "data: a\n\ndata: b\n\n")
        #expect(readText(late).0 == "data: b\n\n")
    }

    @Test("a frame queued for one stream keeps its place among the channel's events")
    func privateFrameKeepsItsPlace() {
        let log = ChannelLog()
        let sub = Subscriber(channels: ["c"], limit: 1 << 16)
        sub.enqueue(frame(": opening\n\n", isEvent: false))
        sub.attach(log: log)
        publish(frame("data: a\n\n"), to: log, readers: [sub])
        sub.enqueue(frame("data: private\n\n"))
        publish(frame("data: c\n\n"), to: log, readers: [sub])
        #expect(readText(sub).0 == ": opening\n\ndata: a\n\ndata: private\n\ndata: c\n\n")
    }

    @Test("a suspended reader is resumed once by the next append, and not again until it suspends")
    func suspendedReaderWokenOnce() {
        let log = ChannelLog()
        let sub = Subscriber(channels: ["c"], limit: 1 << 16)
        let wakes = WakeCounter()
        wakes.install(on: sub)
        sub.attach(log: log)
        #expect(readText(sub).1 == .suspend)
        publish(frame("data: 1\n\n"), to: log, readers: [sub])
        #expect(wakes.value == 1)
        publish(frame("data: 2\n\n"), to: log, readers: [sub])
        #expect(wakes.value == 1, "a resume is already on its way")
        #expect(readText(sub) == ("data: 1\n\ndata: 2\n\n", .suspend))
        publish(frame("data: 3\n\n"), to: log, readers: [sub])
        #expect(wakes.value == 2)
    }

    @Test("a reader over its bound is failed; the others read on and the log does not keep frames for it")
    func slowReaderFailedAtItsBound() {
        let log = ChannelLog()
        let slow = reader(of: log, limit: 100)
        let fast = reader(of: log, limit: 100)
        var fastText = ""
        for i in 0..<20 {
            publish(frame("data: event \(i)\n\n"), to: log, readers: [slow, fast])
            fastText += readText(fast).0
        }
        #expect(slow.wasDropped && !slow.isOpen)
        #expect(readText(slow).1 == .abort)
        #expect(!fast.wasDropped)
        #expect(fastText == (0..<20).map { "data: event \($0)\n\n" }.joined())
        #expect(log.heldFrames <= 1)
    }

    @Test("a finishing reader writes what was published before the finish, then ends")
    func finishStopsAtItsMark() {
        let log = ChannelLog()
        let sub = reader(of: log)
        publish(frame("data: before\n\n"), to: log, readers: [sub])
        sub.finish()
        publish(frame("data: after\n\n"), to: log, readers: [sub])
        #expect(readText(sub) == ("data: before\n\n", .end))
    }

    @Test("a reader behind that is neither suspended nor woken is listed for the stall watch")
    func behindReaderListed() {
        let pending = PendingStreams()
        let log = ChannelLog()
        let sub = reader(of: log, pending: pending)
        publish(frame("data: 1\n\n"), to: log, readers: [sub])
        // The reader takes a part only (the peer's socket is full): it is listed by its reader.
        _ = sub.read(max: 3, write: { _ in }, onSuspend: {})
        #expect(pending.count == 1)
        #expect(Subscriber.visitPending(pending, stallTicks: 0) == 1)
        #expect(pending.count == 1, "still behind: stays listed")
        _ = readText(sub)
        #expect(Subscriber.visitPending(pending, stallTicks: 0) == 1)
        #expect(pending.count == 0)
        // Woken by a publish, it writes everything and is not suspended (libmicrohttpd has bytes
        // to send): the next publish finds it behind and lists it.
        publish(frame("data: 2\n\n"), to: log, readers: [sub])
        #expect(pending.count == 0, "woken: its reader is about to run")
        #expect(sub.read(max: 4_096, write: { _ in }, onSuspend: {}) == .wrote(bytes: 9, events: 1))
        publish(frame("data: 3\n\n"), to: log, readers: [sub])
        #expect(pending.count == 1)
        // Drained, it leaves the set (which would otherwise hold it, and it the set, for good).
        _ = readText(sub)
        Subscriber.visitPending(pending, stallTicks: 0)
        #expect(pending.count == 0)
    }

    @Test("a stalled reader of a log is failed by the ticker")
    func stalledReaderFails() {
        let log = ChannelLog()
        let sub = reader(of: log)
        _ = sub.read(max: 4_096, write: { _ in }, onSuspend: {})
        publish(frame("data: 1\n\n"), to: log, readers: [sub])
        _ = sub.read(max: 2, write: { _ in }, onSuspend: {})
        for _ in 0..<3 { sub.tick(stallTicks: 2) }
        #expect(!sub.wasDropped, "the first tick only starts the count")
        sub.tick(stallTicks: 2)
        #expect(sub.wasDropped)
    }

    @Test(
        "no publish is lost to a reader suspending at the same moment (threads, 2,000 events one at a time, 8 readers)")
    func noLostWakeups() {
        let broker = MemoryBroker(limits: .init(historyCount: 10, historyBytes: 1 << 16))
        let count = 2_000
        let readers = (0..<8).map { _ in Subscriber(channels: ["race"], limit: 1 << 24) }
        let results = Mutex<[Int]>([])
        let progress = Mutex([Int](repeating: 0, count: readers.count))
        let group = DispatchGroup()
        for (i, r) in readers.enumerated() {
            let signal = DispatchSemaphore(value: 0)
            r.setWaker { signal.signal() }
            _ = broker.subscribe(r, after: nil)
            // Each reader on its own thread, as libmicrohttpd's would be; a suspend waits for
            // the waker (a lost wake-up leaves it there until the 10 s limit fails the test).
            DispatchQueue(label: "reader \(i)").async(group: group) {
                var parser = EventStreamParser()
                var seen = 0
                var buffer = [UInt8](repeating: 0, count: 512)
                reading: while seen < count {
                    switch buffer.withUnsafeMutableBytes({ r.read(into: $0, onSuspend: {}) }) {
                    case .wrote(let n, _):
                        for e in parser.feed(Array(buffer[..<n])) {
                            guard e.data == String(seen) else { break reading }
                            seen += 1
                            progress.withLock { $0[i] = seen }
                        }
                    case .suspend:
                        if signal.wait(timeout: .now() + 10) == .timedOut { break reading }
                    case .end, .abort:
                        break reading
                    }
                }
                results.withLock { $0.append(seen) }
            }
        }
        // Each event is published once every reader has read the one before, so each is the
        // last one for a moment: a reader that missed its wake-up would not be woken by a later one.
        DispatchQueue(label: "publisher").async(group: group) {
            let deadline = ContinuousClock.now + .seconds(30)
            for i in 0..<count {
                _ = try? broker.publish(Event(data: "\(i)"), to: "race")
                while progress.withLock({ $0.min()! }) <= i && ContinuousClock.now < deadline {}
            }
        }
        #expect(group.wait(timeout: .now() + 60) == .success)
        #expect(results.withLock { $0 } == Array(repeating: count, count: readers.count))
    }
}
