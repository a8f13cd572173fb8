import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

/// The ticker's set of streams with pending bytes: what the per-second stall pass and the
/// largest-backlog gauge visit instead of every stream.
@Suite("Pending streams: the stall pass visits only streams with bytes pending")
struct PendingStreamsTests {
    private let heartbeat = Frame(bytes: EventEncoder.comment(""), isEvent: false)

    private func suspend(_ subscriber: Subscriber) {
        #expect(subscriber.read(max: 4_096, write: { _ in }, onSuspend: {}) == .suspend)
    }

    @Test("a stream enters on its first pending bytes, once, and leaves on a visit once drained")
    func membership() {
        let set = PendingStreams()
        let sub = Subscriber(channels: ["c"], limit: 1 << 20, pending: set)
        #expect(set.count == 0)
        sub.enqueue(frame("data: a\n\n"))
        sub.enqueue(frame("data: b\n\n"))
        #expect(set.count == 1, "listed once, however many frames")
        #expect(set.largestPendingBytes() == 18)
        #expect(Subscriber.visitPending(set, stallTicks: 30) == 1)
        #expect(set.count == 1, "still pending: stays listed")
        _ = sub.read(max: 4_096, write: { _ in }, onSuspend: {})
        #expect(set.count == 1, "a drain does not touch the set (no lock on the write path)")
        #expect(Subscriber.visitPending(set, stallTicks: 30) == 1)
        #expect(set.count == 0, "drained: dropped by the visit")
        #expect(Subscriber.visitPending(set, stallTicks: 30) == 0, "an idle stream costs the pass nothing")
        sub.enqueue(frame("data: c\n\n"))
        #expect(set.count == 1, "listed again by its next bytes")
    }

    @Test("a stream with pending bytes and no progress is still dropped by the write timeout")
    func stalledStreamIsDropped() {
        let set = PendingStreams()
        let sub = Subscriber(channels: ["c"], limit: 1 << 20, pending: set)
        let wakes = Atomic<Int>(0)
        let cuts = Atomic<Int>(0)
        sub.setConnection(waker: { wakes.add(1, ordering: .relaxed) }, closer: { cuts.add(1, ordering: .relaxed) })
        let idle = Subscriber(channels: ["c"], limit: 1 << 20, pending: set)
        suspend(idle)
        sub.enqueue(frame("data: never read\n\n"))
        let stallTicks = 3
        // The first visit only starts the count; the stream is failed after `stallTicks` more.
        for _ in 0..<stallTicks {
            Subscriber.visitPending(set, stallTicks: stallTicks)
            #expect(sub.isOpen)
        }
        Subscriber.visitPending(set, stallTicks: stallTicks)
        #expect(!sub.isOpen && sub.wasDropped)
        #expect(cuts.load(ordering: .relaxed) == 1, "not suspended: the connection is cut")
        #expect(idle.isOpen, "an idle stream is neither visited nor failed")
        Subscriber.visitPending(set, stallTicks: stallTicks)
        #expect(set.count == 0, "a failed stream leaves the set")
        #expect(wakes.load(ordering: .relaxed) == 0)
    }

    @Test("a stream resumed for bytes its reader never takes is dropped by the write timeout")
    func resumedButNeverReadIsDropped() {
        let set = PendingStreams()
        let sub = Subscriber(channels: ["c"], limit: 1 << 20, pending: set)
        let wakes = WakeCounter()
        wakes.install(on: sub)
        suspend(sub)
        // A probe queued while suspended asks for a resume; the resume is lost (a connection
        // that never runs its reader again), so the bytes stay pending.
        sub.probePeer(heartbeat)
        #expect(wakes.value == 1 && set.count == 1)
        for _ in 0..<2 { Subscriber.visitPending(set, stallTicks: 2) }
        #expect(sub.isOpen)
        Subscriber.visitPending(set, stallTicks: 2)
        #expect(!sub.isOpen && sub.wasDropped)
    }

    @Test("a stream woken for a queued heartbeat costs the stall pass nothing")
    func wokenHeartbeatNotListed() {
        let set = PendingStreams()
        let idle = Subscriber(channels: ["c"], limit: 1 << 20, pending: set)
        let wakes = WakeCounter()
        wakes.install(on: idle)
        suspend(idle)
        #expect(idle.queueHeartbeat(heartbeat) == .heartbeat(wake: true))
        #expect(idle.queueHeartbeat(heartbeat) == .none, "nothing is queued behind pending bytes")
        #expect(set.count == 0, "woken, so not listed: its reader takes the bytes")
        idle.wake()
        #expect(wakes.value == 1)
        Subscriber.visitPending(set, stallTicks: 30)
        #expect(set.count == 0)
        #expect(drain(idle) == heartbeat.bytes)
    }

    @Test("a woken stream is listed only when its reader leaves bytes behind")
    func wokenStreamListedByItsReader() {
        let set = PendingStreams()
        let sub = Subscriber(channels: ["c"], limit: 1 << 20, pending: set)
        let wakes = WakeCounter()
        wakes.install(on: sub)
        suspend(sub)
        let big = frame("data: " + String(repeating: "x", count: 100) + "\n\n")
        #expect(sub.enqueue(big) == .wake)
        sub.enqueue(frame("data: more\n\n"))
        #expect(set.count == 0, "a resume is on its way to the reader: nothing to watch yet")
        var out: [UInt8] = []
        #expect(sub.read(max: 64, write: { out += $0 }, onSuspend: {}) == .wrote(bytes: 64, events: 0))
        #expect(set.count == 1, "the reader left bytes behind: listed for the stall pass")
        #expect(set.largestPendingBytes() == big.bytes.count + 12 - 64)
        out += drain(sub)
        #expect(out == big.bytes + Array("data: more\n\n".utf8))
        Subscriber.visitPending(set, stallTicks: 30)
        #expect(set.count == 0)
        sub.enqueue(frame("data: not woken\n\n"))
        #expect(set.count == 0 && wakes.value == 2, "suspended again by the drain: woken, not listed")
    }

    /// Reads until the stream suspends; returns what was written.
    private func drain(_ subscriber: Subscriber) -> [UInt8] {
        var out: [UInt8] = []
        while case .wrote = subscriber.read(max: 4_096, write: { out += $0 }, onSuspend: {}) {}
        return out
    }
}
