import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

/// Regression tests for what the `resume` fuzz target found (Fuzz/crashes/resume/).
@Suite("Last-Event-ID edge cases found by fuzzing")
struct FuzzFoundResumeTests {
    /// Drains what a subscriber has queued and parses it.
    func prelude(_ sub: Subscriber) -> [ParsedEvent] {
        var bytes: [UInt8] = []
        while case .wrote = sub.read(max: 1 << 20, write: { bytes += $0 }, onSuspend: {}) {}
        var parser = EventStreamParser()
        return parser.feed(bytes)
    }

    // docs/RELIABILITY.md finding 1 (fixed): a caller-given id that looks like a decimal number was,
    // once evicted, read as a position in the server's own sequence. Evicted caller ids are now
    // remembered, and small numbers are never read as server ids.

    @Test("an evicted numeric caller-given id does not replay events the client already had")
    func numericCallerIDNoDuplicates() throws {
        // Fuzz/crashes/resume/numeric-caller-id-duplicate: channels a and b, "17" given by the
        // caller on a after p0 on b, then evicted from a's history.
        let broker = MemoryBroker(limits: .init(historyCount: 2, historyBytes: 1 << 20))
        _ = try broker.publish(Event(data: "p0"), to: "b")
        _ = try broker.publish(Event(data: "p1", id: "17"), to: "a")
        _ = try broker.publish(Event(data: "p2"), to: "a")
        _ = try broker.publish(Event(data: "p3"), to: "a")  // evicts "17"
        let sub = Subscriber(channels: ["a", "b"], limit: 1 << 20)
        _ = broker.subscribe(sub, after: "17")
        let data = prelude(sub).filter { $0.type != "microsse.gap" }.map(\.data)
        #expect(!data.contains("p0"), "p0 came before id 17 and was replayed: \(data)")
        #expect(data == ["p2", "p3"])
    }

    @Test("an evicted numeric caller-given id is never resumed silently past events it did not have")
    func numericCallerIDNoSilentLoss() throws {
        // The fuzzer's second finding: a caller id equal to a later server sequence number makes
        // the broker place the client after events it never got, with no gap event.
        let clock = ManualClock(1_000_000)
        let broker = MemoryBroker(limits: .init(historyCount: 3, historyBytes: 1 << 20), now: { clock.now() })
        _ = try broker.publish(Event(data: "p0", id: "1000005"), to: "a")  // seq 1000000
        for i in 1...5 { _ = try broker.publish(Event(data: "p\(i)"), to: "a") }  // seqs 1000001...1000005
        let sub = Subscriber(channels: ["a"], limit: 1 << 20)
        let status = broker.subscribe(sub, after: "1000005")
        let events = prelude(sub)
        // The client had p0 only: p3, p4, p5 are retained and must come, after a gap event for
        // the evicted p1 and p2.
        let replayed = events.filter { $0.type != "microsse.gap" }.map(\.data)
        #expect(replayed == ["p3", "p4", "p5"], "status \(status), replayed \(replayed)")
        #expect(status == .gap(.evicted))
    }
}

/// A clock tests move by hand.
final class ManualClock: Sendable {
    private let value: Mutex<UInt64>
    init(_ start: UInt64) { value = Mutex(start) }
    func now() -> UInt64 { value.withLock { $0 } }
}
