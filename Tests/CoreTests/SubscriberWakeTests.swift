import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

@Suite("Subscriber wake-ups")
struct SubscriberWakeTests {
    /// Stack address of a local in the waker, per call: a waker reached through a growing chain of
    /// wrappers (each wake-up re-wrapping the stored closure) runs deeper on every call.
    final class DepthProbe: Sendable {
        let first = Atomic<Int>(0)
        let last = Atomic<Int>(0)
        let calls = Atomic<Int>(0)

        func record() {
            var local = 0
            let address = withUnsafeMutablePointer(to: &local) { Int(bitPattern: $0) }
            if calls.wrappingAdd(1, ordering: .relaxed).oldValue == 0 {
                first.store(address, ordering: .relaxed)
            }
            last.store(address, ordering: .relaxed)
        }
    }

    @Test("every suspend is woken by exactly one call that runs no deeper after 10,000 wake-ups")
    func wakeStaysFlat() {
        let subscriber = Subscriber(channels: ["c"], limit: 1 << 20)
        let probe = DepthProbe()
        subscriber.setWaker { probe.record() }
        let event = frame("data: x\n\n")
        for i in 0..<10_000 {
            var suspended = 0
            var action = subscriber.read(max: 4096, write: { _ in }, onSuspend: { suspended += 1 })
            #expect(action == .suspend && suspended == 1)
            #expect(subscriber.enqueue(event) == .wake)
            #expect(probe.calls.load(ordering: .relaxed) == i + 1)
            action = subscriber.read(max: 4096, write: { _ in }, onSuspend: {})
            #expect(action == .wrote(bytes: event.bytes.count, events: 1))
        }
        let drift = abs(probe.last.load(ordering: .relaxed) - probe.first.load(ordering: .relaxed))
        #expect(drift < 4096, "the waker ran \(drift) bytes deeper on the last wake-up than on the first")
    }

    @Test("a closer installed on a stream is run once on overflow and never after detach")
    func closerAndDetach() {
        let subscriber = Subscriber(channels: ["c"], limit: 16)
        let cuts = Atomic<Int>(0)
        subscriber.setCloser { cuts.add(1, ordering: .relaxed) }
        #expect(subscriber.enqueue(frame(String(repeating: "x", count: 32))) == .overflow(wake: false))
        #expect(cuts.load(ordering: .relaxed) == 1)
        subscriber.detach()
        subscriber.fail()
        #expect(cuts.load(ordering: .relaxed) == 1)
    }
}
