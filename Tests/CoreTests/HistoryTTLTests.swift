import MicroSSECore
import MicroSSEWire
import Testing

@Suite("Memory broker: history that expires")
struct HistoryTTLTests {
    let clock = FakeClock(1_700_000_000_000_000)

    func broker(ttl: Int) -> MemoryBroker {
        MemoryBroker(limits: .init(historyCount: 1_000, historyBytes: 1 << 20, ttlSeconds: ttl), now: clock.now)
    }

    /// What a new subscriber of `channels` resuming after `lastEventID` is queued, parsed.
    func resume(_ b: MemoryBroker, _ channels: [ChannelName], after lastEventID: String) -> (
        ResumeStatus, [ParsedEvent]
    ) {
        let sub = Subscriber(channels: channels, limit: 1 << 20)
        let status = b.subscribe(sub, after: lastEventID)
        var bytes: [UInt8] = []
        while case .wrote = sub.read(max: 1 << 20, write: { bytes += $0 }, onSuspend: {}) {}
        var parser = EventStreamParser()
        return (status, parser.feed(bytes))
    }

    @Test("events older than the TTL are not replayed, and a resume that missed one is a gap")
    func expiredEventsAreAGap() throws {
        let b = broker(ttl: 10)
        let first = try b.publish("old", to: "a")
        try b.publish("lost", to: "a")  // the client resuming after "old" never saw this one
        clock.advance(6_000_000)
        let second = try b.publish("middle", to: "a")
        clock.advance(6_000_000)  // "old" and "lost" are now 12 s old, "middle" 6 s
        try b.publish("new", to: "a")
        let (status, events) = resume(b, ["a"], after: first)
        #expect(status == .gap(.evicted))
        #expect(events.map(\.data) == [ControlEvents.gap(lastEventID: first, reason: "evicted").data, "middle", "new"])
        // A resume from an event still inside the TTL is exact.
        let (exact, later) = resume(b, ["a"], after: second)
        #expect(exact == .exact)
        #expect(later.map(\.data) == ["new"])
    }

    @Test("expiry happens at resume time too, without a publish to trigger it")
    func expiryWithoutPublish() throws {
        let b = broker(ttl: 5)
        let first = try b.publish("one", to: "a")
        try b.publish("two", to: "a")
        clock.advance(5_000_001)
        let (status, events) = resume(b, ["a"], after: first)
        #expect(status == .gap(.evicted))
        #expect(events.count == 1)  // the gap event alone: "two" expired as well
        #expect(b.channelCount == 1)  // the new subscriber keeps the channel
    }

    @Test("a TTL of 0 keeps events whatever their age")
    func noTTL() throws {
        let b = broker(ttl: 0)
        let first = try b.publish("one", to: "a")
        try b.publish("two", to: "a")
        clock.advance(86_400_000_000)
        let (status, events) = resume(b, ["a"], after: first)
        #expect(status == .exact)
        #expect(events.map(\.data) == ["two"])
    }
}
