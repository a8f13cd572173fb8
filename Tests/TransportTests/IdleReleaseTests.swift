import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

@testable import MicroSSETransport

/// A stream object for the release pass without a connection: the subscriber and the
/// bookkeeping the transport's ``StreamSocket`` holds.
private final class TestStream: IdleRegionOwner {
    let subscriber: Subscriber
    var idle = IdleRelease()
    init(_ subscriber: Subscriber) { self.subscriber = subscriber }
}

/// A connection that counts resumes.
private final class Resumes: StreamConnection {
    let count = Atomic<Int>(0)
    func resume() { count.add(1, ordering: .relaxed) }
    func cut() {}
}

/// The transport's release pass over idle streams: the whole pages of the region libmicrohttpd
/// last handed a suspended stream's reader go back to the kernel, once per suspension, never
/// while a reader or a resume may touch them.
@Suite("Idle streams: the write region given back")
struct IdleReleaseTests {
    @Test("the page-aligned interior of a region, or nil when it holds no whole page")
    func wholePages() {
        typealias P = IdleRelease.Pages
        #expect(
            IdleRelease.wholePages(address: 4_096, count: 8_192, pageSize: 4_096) == P(address: 4_096, count: 8_192))
        #expect(
            IdleRelease.wholePages(address: 4_100, count: 12_000, pageSize: 4_096) == P(address: 8_192, count: 4_096))
        #expect(IdleRelease.wholePages(address: 4_100, count: 8_000, pageSize: 4_096) == nil)
        #expect(IdleRelease.wholePages(address: 0x1_0010, count: 256, pageSize: 4_096) == nil)
        #expect(IdleRelease.wholePages(address: UInt.max - 10, count: 5, pageSize: 4_096) == nil)
    }

    @Test("a suspended stream's region is given back on the second pass, once, inside the reader's buffer")
    func releaseOnSecondPass() {
        let subscriber = Subscriber(channels: ["c"], limit: 1 << 20)
        let resumes = Resumes()
        subscriber.attach(resumes)
        let stream = TestStream(subscriber)
        let allocation = UnsafeMutableRawBufferPointer.allocate(byteCount: 32_100, alignment: 4_096)
        defer { allocation.deallocate() }
        // As libmicrohttpd hands it: after the request and the chunk header, not page-aligned.
        let buffer = UnsafeMutableRawBufferPointer(rebasing: allocation[100...])
        let start = UInt(bitPattern: buffer.baseAddress)
        let released = Mutex<[(UInt, Int)]>([])
        let listings = Mutex(0)
        func pass() -> Int {
            stream.visitIdle(pageSize: 4_096) { p, n in released.withLock { $0.append((p, n)) } }.released
        }
        func read() -> SubscriberQueue.ReadAction {
            stream.read(into: buffer, directBudget: 0, onSuspend: {}, onListing: { listings.withLock { $0 += 1 } })
        }
        #expect(pass() == 0, "never read: nothing to give back")
        #expect(read() == .suspend)
        #expect(listings.withLock { $0 } == 1)
        #expect(stream.visitIdle(pageSize: 4_096) { _, _ in } == (0, true), "the first pass only marks")
        let bytes = pass()
        #expect(bytes > 0 && bytes % 4_096 == 0)
        #expect(stream.visitIdle(pageSize: 4_096) { _, _ in } == (0, false), "once per suspension, then dropped")
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
        #expect(resumes.count.load(ordering: .relaxed) == 2)
    }

    /// The region an idle stream gives back is the whole buffer libmicrohttpd handed its reader,
    /// even when a paced read filled only part of it (else the pages a full read had touched
    /// stayed resident: 15 KB per stream in scripts/resume-memory.py).
    @Test("a read filling 2 KiB of a 32 KiB buffer leaves the whole buffer's pages to give back")
    func pacedReadKeepsRegion() {
        let subscriber = Subscriber(channels: ["c"], limit: 1 << 20)
        let stream = TestStream(subscriber)
        let allocation = UnsafeMutableRawBufferPointer.allocate(byteCount: 32_768, alignment: 4_096)
        defer { allocation.deallocate() }
        let released = Mutex(0)
        func pass() -> Int {
            stream.visitIdle(pageSize: 4_096) { _, n in released.withLock { $0 += n } }.released
        }
        func read() -> SubscriberQueue.ReadAction {
            stream.read(into: allocation, filling: 2_048, directBudget: 0, onSuspend: {}, onListing: {})
        }
        _ = subscriber.enqueue(frame("data: " + String(repeating: "z", count: 3_000) + "\n\n"))
        // Paced: 2 KiB of the 32 KiB buffer per call, until the event is out.
        #expect(read() == .wrote(bytes: 2_048, events: 0))
        #expect(read() == .wrote(bytes: 960, events: 1))
        #expect(read() == .suspend)
        #expect(pass() == 0, "the first pass only marks")
        #expect(pass() == 32_768, "the whole buffer, not the 2 KiB filled")
    }
}
