import Foundation
import MicroSSE
import MicroSSEMercure
import MicroSSETestSupport
import Testing

@Suite("Mercure draft-08: publish and subscribe")
struct PublishSubscribeTests {
    @Test("a publish answers 200 text/plain with a urn:uuid v4 id, and a match= subscriber gets the update with it")
    func publishAndReceive() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let books = try subscribe(hub, [("match", "https://example.com/books/1")])
        defer { books.close() }
        let other = try subscribe(hub, [("match", "https://example.com/books/2")])
        defer { other.close() }
        #expect(books.status == 200)
        #expect(books.head.header("Content-Type")?.hasPrefix("text/event-stream") == true)
        #expect(books.head.header("Mercure-Last-Event-ID") == nil)  // no Last-Event-ID asked
        let token = token08(publish: ["*"])
        let r = try publish(
            hub,
            [
                ("topic", "https://example.com/books/1"), ("data", "line 1\nline 2"), ("type", "book"),
                ("retry", "2500"),
            ],
            token: token)
        #expect(r.status == 200, "\(r.status) \(r.text)")
        #expect(r.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(isUUIDv4URN(r.text), "id \(r.text.debugDescription)")
        let e = try #require(try books.next())
        #expect(e.id == r.text && e.data == "line 1\nline 2" && e.type == "book")
        #expect(String(decoding: books.body, as: UTF8.self).contains("retry: 2500\n"))
        // The other topic's stream got nothing: its first event is the one for its own topic.
        let second = try publish(hub, [("topic", "https://example.com/books/2"), ("data", "two")], token: token)
        #expect(try other.next()?.id == second.text)
        #expect(hub.statistics.published == 2)
    }

    @Test("the publisher's id is kept and returned; ids of two publishes differ")
    func givenID() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let s = try subscribe(hub, [("match", "t")])
        defer { s.close() }
        let token = token08(publish: ["t"])
        let given = try publish(
            hub, [("topic", "t"), ("id", "https://example.com/rev/7"), ("data", "x")], token: token)
        #expect(given.status == 200 && given.text == "https://example.com/rev/7")
        let a = try publish(hub, [("topic", "t")], token: token)
        let b = try publish(hub, [("topic", "t")], token: token)
        #expect(a.text != b.text)
        #expect(try s.events(3).map(\.id) == [given.text, a.text, b.text])
    }

    @Test("several matchers and an update of several topics: delivered once per stream; * gets every update")
    func onceAndWildcard() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let both = try subscribe(hub, [("match", "a"), ("match_exact", "b"), ("match", "a")])
        defer { both.close() }
        let all = try subscribe(hub, [("match", "*"), ("match", "a")])
        defer { all.close() }
        let token = token08(publish: ["*"])
        let ab = try publish(hub, [("topic", "a"), ("topic", "b"), ("data", "ab")], token: token)
        let c = try publish(hub, [("topic", "c"), ("data", "c")], token: token)
        let b = try publish(hub, [("topic", "b"), ("data", "b")], token: token)
        #expect(try both.events(2).map(\.id) == [ab.text, b.text])
        #expect(try all.events(3).map(\.id) == [ab.text, c.text, b.text])
        // Nothing more came (a duplicate of ab would be here before this one).
        let d = try publish(hub, [("topic", "a"), ("data", "d")], token: token)
        #expect(try both.next()?.id == d.text)
        #expect(try all.next()?.id == d.text)
    }

    @Test("topics are compared byte for byte: no normalisation, case or trailing slash")
    func byteForByte() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let s = try subscribe(hub, [("match", "https://example.com/caf\u{E9}")])
        defer { s.close() }
        let token = token08(publish: ["*"])
        try publish(hub, [("topic", "https://example.com/cafe\u{301}")], token: token)  // NFD
        try publish(hub, [("topic", "https://EXAMPLE.com/caf\u{E9}")], token: token)
        try publish(hub, [("topic", "https://example.com/caf\u{E9}/")], token: token)
        let exact = try publish(hub, [("topic", "https://example.com/caf\u{E9}"), ("data", "hit")], token: token)
        #expect(try s.next()?.id == exact.text)
    }

    @Test("a Mercure topic and the channel of the same name are two streams")
    func notChannels() throws {
        let hub = try mercureHub {
            $0.publishing = true
            $0.publicChannels = ["news"]
        }
        defer { hub.stop() }
        let channel = try EventStreamClient(port: hub.port, path: "/events/news")
        defer { channel.close() }
        #expect(channel.status == 200)
        let mercure = try subscribe(hub, [("match", "news")])
        defer { mercure.close() }
        try publish(hub, [("topic", "news"), ("data", "to mercure")], token: token08(publish: ["*"]))
        _ = try hub.publish("to the channel", to: "news")
        #expect(try channel.next()?.data == "to the channel")
        #expect(try mercure.next()?.data == "to mercure")
        #expect(try mercure.next(timeout: 0.3) == nil)
    }

    @Test("CORS: the cursor header is exposed to the allowed origin, with credentials")
    func corsExpose() throws {
        let hub = try mercureHub { $0.corsOrigins = ["https://app.example"] }
        defer { hub.stop() }
        let s = try subscribe(
            hub, [("match", "t"), ("last_event_id", "earliest")], headers: [("Origin", "https://app.example")])
        defer { s.close() }
        #expect(s.head.header("Access-Control-Allow-Origin") == "https://app.example")
        #expect(s.head.header("Access-Control-Allow-Credentials") == "true")
        #expect(s.head.header("Access-Control-Expose-Headers")?.contains("Mercure-Last-Event-ID") == true)
        #expect(s.head.header("Mercure-Last-Event-ID") == "earliest")
    }
}
