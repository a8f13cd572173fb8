import MicroSSECore
import MicroSSEWire
import Testing

@testable import MicroSSEMercure

@Suite("Mercure feeds: streams that receive the same updates share one log")
struct FeedTests {
    private func stream() -> Subscriber { Subscriber(channels: [], limit: 1 << 20) }

    @Test(
        "equal matchers and grants share a feed; another grant or matcher makes another; the last stream takes it away")
    func sharing() throws {
        let bus = MercureBus(historyCount: 10, historyBytes: 1 << 20)
        let t = Matchers(exact: [Topic("t")])
        let granted = TopicGrant(exact: [Topic("t")])
        let a = stream()
        let b = stream()
        let c = stream()
        let d = stream()
        for s in [a, b] { _ = bus.subscribe(s, matchers: t, grant: TopicGrant(), lastEventID: nil) }
        #expect(bus.counts == (2, 1))
        _ = bus.subscribe(c, matchers: t, grant: granted, lastEventID: nil)
        _ = bus.subscribe(d, matchers: Matchers(all: true), grant: TopicGrant(), lastEventID: nil)
        #expect(bus.counts == (4, 3))
        bus.publish(try Event(data: "x", id: "1"), topics: [Topic("t")], isPrivate: false)
        for s in [a, b, c, d] { bus.remove(s) }
        #expect(bus.counts == (0, 0))
    }
}
