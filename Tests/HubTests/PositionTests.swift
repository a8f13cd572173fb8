import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

/// Positions the hub issues, labels per channel (docs/RESUME.md, docs/DESIGN.md "Positions,
/// labels and epochs"), at the shipped defaults.
@Suite("Positions and labels")
struct PositionTests {
    @Test("two channels numbering their own events 1…1100: resuming A from 50 gets evicted and A's 1,000")
    func sameLabelsInTwoChannels() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        for i in 1...1_100 { #expect(try hub.publish(Event(data: "A\(i)", id: String(i)), to: "a") == String(i)) }
        for i in 1...1_100 { try hub.publish(Event(data: "B\(i)", id: String(i)), to: "b") }
        let c = try subscribe(hub, "/events/a", headers: [("Last-Event-ID", "50")])
        #expect(c.head.header("MicroSSE-Gap") == "evicted")
        let events = try c.events(1_001, timeout: 20)
        #expect(events[0].type == "microsse.gap")
        #expect(events.dropFirst().map(\.data) == (101...1_100).map { "A\($0)" })
        #expect(events.dropFirst().map(\.id) == (101...1_100).map { String($0) }, "the labels verbatim")
        #expect(try c.next(timeout: 0.2) == nil)
        // A label still retained in A resumes exactly, whatever B did with the same label.
        let exact = try subscribe(hub, "/events/a", headers: [("Last-Event-ID", "1097")])
        #expect(exact.head.header("MicroSSE-Gap") == nil)
        #expect(try exact.events(3).map(\.data) == ["A1098", "A1099", "A1100"])
    }

    @Test("a publisher allowed only on mine republishes news's ids there: a news subscriber still gets all 8")
    func hostileRepublisher() throws {
        let hub = try makeHub { $0.jwt = JWTSettings(secret: TokenMint.secret) }
        defer { hub.stop() }
        let news = try (0...8).map { try hub.publish("news \($0)", to: "news") }
        let token = TokenMint.hs256(TokenMint.claims(subscribe: ["news", "mine"], publish: ["mine"]))
        #expect(try post(hub, "news", "forged", token: token).status == 403, "news is not granted")
        for id in news {
            let r = try post(hub, "mine", "echo", query: "id=\(id)", token: token)
            #expect(r.status == 400 && r.text.contains("reserved"), "the hub's ids are no label: \(r.status) \(r.text)")
        }
        // Labels of mine, evicted by 1,000 fillers, never place a stream of news.
        for i in 0..<8 { try hub.publish(Event(data: "label \(i)", id: "n\(i)"), to: "mine") }
        for i in 0..<1_000 { try hub.publish("filler \(i)", to: "mine") }
        let resumed = try subscribe(
            hub, "/events/news?lastEventId=\(news[0])", headers: [("Authorization", "Bearer \(token)")])
        #expect(resumed.head.header("MicroSSE-Gap") == nil)
        #expect(try resumed.events(8).map(\.data) == (1...8).map { "news \($0)" }, "all 8")
        let label = try subscribe(hub, "/events/news?lastEventId=n0", headers: [("Authorization", "Bearer \(token)")])
        #expect(label.head.header("MicroSSE-Gap") == "unknown", "a label of mine is unknown in news")
    }

    @Test("an id in the hub's own form is refused as a publisher's label, with a one-line reason")
    func reservedLabel() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let r = try post(hub, "a", "x", query: "id=~1.0.abc.1")
        #expect(r.status == 400 && isOneLine(r.text), "\(r.status) \(r.text)")
        #expect(r.text.contains("reserved"))
        #expect(throws: MicroSSEError.self) { try hub.publish(Event(data: "x", id: "~mine"), to: "a") }
    }

    @Test("a stream of several channels sees positions for labelled events, and resumes exactly from them")
    func compositeIDs() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let live = try subscribe(hub, "/events?channel=a&channel=b")
        try #require(waitForClients(hub, 1))
        var ids: [String] = []
        for i in 1...6 {
            ids.append(try hub.publish(Event(data: "e\(i)", id: String(i)), to: i % 2 == 0 ? "a" : "b"))
        }
        #expect(ids == (1...6).map(String.init), "a publisher gets its label back")
        let seen = try live.events(6)
        #expect(seen.map(\.data) == (1...6).map { "e\($0)" })
        #expect(seen.allSatisfy { $0.id?.hasPrefix("~1.") == true }, "positions: \(seen.map(\.id))")
        let resumed = try subscribe(hub, "/events?channel=b&channel=a", headers: [("Last-Event-ID", seen[2].id!)])
        #expect(resumed.head.header("MicroSSE-Gap") == nil)
        #expect(try resumed.events(3).map(\.data) == ["e4", "e5", "e6"])
        // The label "3" names e3 in b alone: a stream of a and b is placed by it too (one log).
        let byLabel = try subscribe(hub, "/events?channel=a&channel=b", headers: [("Last-Event-ID", "3")])
        #expect(byLabel.head.header("MicroSSE-Gap") == nil)
        #expect(try byLabel.events(3).map(\.data) == ["e4", "e5", "e6"])
    }
}
