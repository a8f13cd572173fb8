import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What an idle stream's queue does for the transport's peer watcher (the release pass over idle
/// streams is the transport's: TransportTests, IdleReleaseTests).
@Suite("Idle streams: peer probe")
struct IdleStreamTests {
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
