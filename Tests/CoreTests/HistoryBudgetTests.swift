import MicroSSECore
import MicroSSEWire
import Testing

@Suite("Memory broker: one history budget for all channels")
struct HistoryBudgetTests {
    let clock = FakeClock(1_700_000_000_000_000)

    func broker(count: Int = 1_000, bytes: Int = 1 << 20, budget: Int) -> MemoryBroker {
        MemoryBroker(
            limits: .init(historyCount: count, historyBytes: bytes, memoryBytes: budget), now: clock.now)
    }

    @Test("200,000 one-byte publishes to distinct channels keep the accounted bytes and channels bounded")
    func distinctChannelsStayBounded() throws {
        let budget = 1 << 20
        let b = broker(budget: budget)
        var most = 0
        for i in 0..<200_000 {
            try b.publish("x", to: "c\(i)")
            if i % 1_000 == 0 {
                most = max(most, b.accountedBytes)
                #expect(b.accountedBytes <= budget)
            }
        }
        #expect(most <= budget)
        #expect(b.accountedBytes <= budget)
        // Each channel costs at least its overhead and one event.
        let ceiling = budget / (MemoryBroker.channelOverhead + MemoryBroker.entryOverhead)
        #expect(b.channelCount <= ceiling, "\(b.channelCount) channels kept")
        #expect(b.channelCount > 0)
    }

    @Test("publishes to one channel within its own limits never pile up past the budget either")
    func oneChannelStaysBounded() throws {
        let b = broker(count: 10, budget: 64 << 10)
        for i in 0..<100_000 { try b.publish(String(i), to: "a") }
        #expect(b.accountedBytes <= 64 << 10)
        #expect(b.channelCount == 1)
    }

    @Test("over the budget, the oldest event of all channels is evicted first")
    func evictsGlobalOldestFirst() throws {
        // Room for the three channels and about four events.
        let b = broker(budget: 3 * (MemoryBroker.channelOverhead + 1) + 4 * (MemoryBroker.entryOverhead + 60))
        let a1 = try b.publish("a1", to: "a")
        try b.publish("b1", to: "b")
        try b.publish("c1", to: "c")
        try b.publish("a2", to: "a")
        try b.publish("b2", to: "b")
        // Resuming from before everything: what is still retained, in publish order.
        let sub = Subscriber(channels: ["a", "b", "c"], limit: 1 << 20)
        let before = HubID.encode(HubPosition(epoch: b.epoch, major: try #require(HubID.decode(a1)?.first).major - 1))
        #expect(b.subscribe(sub, after: before) == .gap(.evicted))
        let events = sub.receivedEvents()
        #expect(events.first?.type == "microsse.gap")
        #expect(events.dropFirst().map(\.data) == ["b1", "c1", "a2", "b2"])
    }

    @Test("a resume after global eviction gets the evicted gap and never a duplicate")
    func resumeAfterGlobalEviction() throws {
        let b = broker(budget: 16 << 10)
        let sub = Subscriber(channels: ["news"], limit: 1 << 20)
        _ = b.subscribe(sub, after: nil)
        var ids: [String] = []
        for i in 0..<20 { ids.append(try b.publish("n\(i)", to: "news")) }
        let seen = sub.receivedEvents()
        #expect(seen.count == 20)
        b.unsubscribe(sub)
        // Other channels push every event of `news` out of the budget.
        for i in 0..<2_000 { try b.publish(String(repeating: "x", count: 100), to: "other\(i % 7)") }
        let again = Subscriber(channels: ["news"], limit: 1 << 20)
        #expect(b.subscribe(again, after: ids[10]) == .gap(.evicted))
        let events = again.receivedEvents()
        #expect(events.map(\.type) == ["microsse.gap"])
        // A live event after the resume arrives once.
        let live = try b.publish("live", to: "news")
        #expect(again.receivedEvents().map(\.id) == [live])
    }

    @Test("a resume into a forgotten channel still reports what was evicted from it")
    func forgottenChannelKeepsFloor() throws {
        let b = broker(budget: 8 << 10)
        let first = try b.publish("one", to: "gone")
        try b.publish("two", to: "gone")
        for i in 0..<1_000 { try b.publish(String(repeating: "y", count: 50), to: "busy\(i)") }
        #expect(b.accountedBytes <= 8 << 10)
        let sub = Subscriber(channels: ["gone"], limit: 1 << 20)
        #expect(b.subscribe(sub, after: first) == .gap(.evicted))
        #expect(sub.receivedEvents().map(\.type) == ["microsse.gap"])
    }

    @Test("channels with no subscribers and nothing retained are forgotten; subscribed ones stay")
    func idleChannelsForgotten() throws {
        let b = broker(count: 0, budget: 1 << 20)
        for i in 0..<1_000 { try b.publish("x", to: "c\(i)") }
        #expect(b.channelCount == 0)
        let sub = Subscriber(channels: ["kept"], limit: 1 << 20)
        _ = b.subscribe(sub, after: nil)
        try b.publish("x", to: "kept")
        #expect(b.channelCount == 1)
        b.unsubscribe(sub)
        #expect(b.channelCount == 0)
        #expect(b.accountedBytes == 0)
    }

    @Test("a channel under the budget still resumes exactly")
    func exactUnderBudget() throws {
        let b = broker(budget: 1 << 20)
        let one = try b.publish("1", to: "a")
        try b.publish("2", to: "a")
        let sub = Subscriber(channels: ["a"], limit: 1 << 20)
        #expect(b.subscribe(sub, after: one) == .exact)
        #expect(sub.receivedEvents().map(\.data) == ["2"])
    }
}
