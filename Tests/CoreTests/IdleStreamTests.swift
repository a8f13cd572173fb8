import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What an idle stream's queue does for the transport's peer watcher and release pass, and the
/// batched tick.
@Suite("Idle streams: buffer release, peer probe, batched ticks")
struct IdleStreamTests {
    @Test("the page-aligned interior of a region, or nil when it holds no whole page")
    func wholePages() {
        #expect(Subscriber.wholePages(address: 4_096, count: 8_192, pageSize: 4_096)! == (4_096, 8_192))
        #expect(Subscriber.wholePages(address: 4_100, count: 12_000, pageSize: 4_096)! == (8_192, 4_096))
        #expect(Subscriber.wholePages(address: 4_100, count: 8_000, pageSize: 4_096) == nil)
        #expect(Subscriber.wholePages(address: 0x1_0010, count: 256, pageSize: 4_096) == nil)
        #expect(Subscriber.wholePages(address: UInt.max - 10, count: 5, pageSize: 4_096) == nil)
    }

    @Test("a suspended stream's region is given back on the second pass, once, inside the reader's buffer")
    func releaseOnSecondPass() {
        let subscriber = Subscriber(channels: ["c"], limit: 1 << 20)
        let wakes = WakeCounter()
        wakes.install(on: subscriber)
        let allocation = UnsafeMutableRawBufferPointer.allocate(byteCount: 32_100, alignment: 4_096)
        defer { allocation.deallocate() }
        // As libmicrohttpd hands it: after the request and the chunk header, not page-aligned.
        let buffer = UnsafeMutableRawBufferPointer(rebasing: allocation[100...])
        let start = UInt(bitPattern: buffer.baseAddress)
        let released = Mutex<[(UInt, Int)]>([])
        let listings = Mutex(0)
        func pass() -> Int {
            subscriber.visitIdle(pageSize: 4_096) { p, n in
                released.withLock { $0.append((p, n)) }
            }.released
        }
        func read() -> SubscriberQueue.ReadAction {
            subscriber.read(into: buffer, onSuspend: {}, onListing: { listings.withLock { $0 += 1 } })
        }
        #expect(pass() == 0, "never read: nothing to give back")
        #expect(read() == .suspend)
        #expect(listings.withLock { $0 } == 1)
        #expect(subscriber.visitIdle(pageSize: 4_096) { _, _ in } == (0, true), "the first pass only marks")
        let bytes = pass()
        #expect(bytes > 0 && bytes % 4_096 == 0)
        #expect(subscriber.visitIdle(pageSize: 4_096) { _, _ in } == (0, false), "once per suspension, then dropped")
        let (p, n) = released.withLock { $0[0] }
        #expect(p >= start && p + UInt(n) <= start + UInt(buffer.count) && p % 4_096 == 0)

        // A resumed stream is never released; a new suspension starts the count again.
        #expect(subscriber.enqueue(frame("data: x\n\n")) == .wake)
        #expect(pass() == 0 && pass() == 0)
        #expect(listings.withLock { $0 } == 1)
        #expect(read() == .wrote(bytes: 9, events: 1))
        #expect(pass() == 0 && pass() == 0, "running, not suspended")
        #expect(read() == .suspend)
        #expect(listings.withLock { $0 } == 1, "a small write did not touch the pages given back: not listed")
        #expect(pass() == 0)
        #expect(pass() == 0, "no second release")
        #expect(released.withLock { $0.count } == 1)

        // A write across the pages makes them resident again: the next idle spell gives them back.
        #expect(subscriber.enqueue(frame("data: " + String(repeating: "z", count: 10_000) + "\n\n")) == .wake)
        #expect(read() == .wrote(bytes: 10_008, events: 1))
        #expect(read() == .suspend)
        #expect(listings.withLock { $0 } == 2, "listed again: the write reached the pages")
        #expect(pass() == 0)
        #expect(pass() == bytes)
        #expect(released.withLock { $0.count } == 2)
        #expect(wakes.value == 2)
    }

    @Test("a FIN probe is queued once, only when nothing is pending, and resumes a suspended stream")
    func probeOnce() {
        let subscriber = Subscriber(channels: ["c"], limit: 1 << 20)
        let wakes = WakeCounter()
        wakes.install(on: subscriber)
        let probe = Frame(bytes: EventEncoder.comment(""), isEvent: false)
        _ = subscriber.read(max: 4_096, write: { _ in }, onSuspend: {})
        subscriber.probePeer(probe)
        #expect(wakes.value == 1 && subscriber.pendingBytes == probe.bytes.count)
        var out: [UInt8] = []
        _ = subscriber.read(max: 4_096, write: { out += $0 }, onSuspend: {})
        #expect(out == probe.bytes)
        _ = subscriber.read(max: 4_096, write: { _ in }, onSuspend: {})
        subscriber.probePeer(probe)
        #expect(wakes.value == 1 && subscriber.pendingBytes == 0, "one probe per stream")

        let busy = Subscriber(channels: ["c"], limit: 1 << 20)
        busy.enqueue(frame("data: y\n\n"))
        busy.probePeer(probe)
        #expect(busy.pendingBytes == 9, "pending bytes probe just as well")
    }
}

extension Clocks {
    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
