import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

@testable import MicroSSEMercure

@Suite("Mercure draft-08: match_urlpattern (WHATWG URL Pattern)")
struct URLPatternTests {
    /// Publishes each topic in turn (one update per topic, data = topic); returns the ids.
    private func publishEach(_ hub: Server, _ topics: [String], isPrivate: Bool = false) throws -> [String: String] {
        var ids: [String: String] = [:]
        for topic in topics {
            var fields = [("topic", topic), ("data", topic)]
            if isPrivate { fields.append(("private", "on")) }
            let r = try publish(hub, fields, token: token08(publish: ["*"]))
            #expect(r.status == 200, "\(r.status) \(r.text)")
            ids[topic] = r.text
        }
        return ids
    }

    /// Which of `topics` (published in order, each once) `pattern` delivers, read up to a last
    /// update every pattern here matches.
    private func delivered(_ patterns: [String], _ topics: [String]) throws -> [String] {
        let hub = try mercureHub()
        defer { hub.stop() }
        let fence = "https://fence.example/end"
        let s = try subscribe(hub, patterns.map { ("match_urlpattern", $0) } + [("match", fence)])
        defer { s.close() }
        #expect(s.status == 200, "\(s.status) \(String(decoding: s.body, as: UTF8.self))")
        _ = try publishEach(hub, topics + [fence])
        var got: [String] = []
        while let e = try s.next(), e.data != fence { got.append(e.data) }
        return got
    }

    @Test("named groups, wildcards, optional groups: only matching topics arrive, in order")
    func syntax() throws {
        let topics = [
            "https://example.com/books/1", "https://example.com/books/1/reviews", "https://example.com/authors/1",
            "https://example.com/books/", "https://example.com/books/2?lang=fr#top", "http://example.com/books/3",
            "https://EXAMPLE.com:443/books/4", "https://example.com:8443/books/5", "https://example.com/books/6/../7",
        ]
        #expect(
            try delivered(["https://example.com/books/:id"], topics) == [
                "https://example.com/books/1", "https://example.com/books/2?lang=fr#top",
                "https://EXAMPLE.com:443/books/4", "https://example.com/books/6/../7",
            ])
        #expect(
            try delivered(["https://example.com/books/:id{/reviews}?"], topics) == [
                "https://example.com/books/1", "https://example.com/books/1/reviews",
                "https://example.com/books/2?lang=fr#top", "https://EXAMPLE.com:443/books/4",
                "https://example.com/books/6/../7",
            ])
        #expect(
            try delivered(["http{s}?://example.com/*"], topics).count == 8)  // not :8443
        #expect(
            try delivered(["https://example.com/books/:id\\?lang=fr#top", "https://example.com:8443/*"], topics) == [
                "https://example.com/books/2?lang=fr#top", "https://example.com:8443/books/5",
            ])
        #expect(
            try delivered(["https://*.example.com/:path+"], ["https://a.example.com/x/y", "https://example.com/x"])
                == ["https://a.example.com/x/y"])
    }

    @Test("relative patterns and relative topics are read against the hub's URL (the audience)")
    func relative() throws {
        // mercureHub's audience is https://hub.example/.well-known/mercure.
        #expect(
            try delivered(
                ["/books/:id"],
                ["/books/1", "https://hub.example/books/2", "https://other.example/books/3", "books/4", "/books/5/x"])
                == ["/books/1", "https://hub.example/books/2"])
        #expect(
            try delivered(["books/:id"], ["books/4", "/.well-known/books/5", "/books/6"]) == [
                "books/4", "/.well-known/books/5",
            ])
    }

    @Test("an update matching several matchers of a stream arrives once; * is the wildcard here too")
    func once() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let s = try subscribe(
            hub,
            [
                ("match_urlpattern", "https://example.com/books/:id"), ("match", "https://example.com/books/1"),
                ("match_urlpattern", "https://example.com/*"),
            ])
        defer { s.close() }
        let all = try subscribe(hub, [("match_urlpattern", "*")])
        defer { all.close() }
        let ids = try publishEach(hub, ["https://example.com/books/1", "urn:x", "https://example.com/books/2"])
        #expect(try s.events(2).map(\.id) == [ids["https://example.com/books/1"], ids["https://example.com/books/2"]])
        #expect(try all.events(3).count == 3)
        #expect(try s.next(timeout: 0.3) == nil)
    }

    @Test("private updates: the pattern routes, the token's grant decides (live and on replay)")
    func privateUpdates() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let grant = token08(subscribe: ["https://example.com/books/1"])
        let live = try subscribe(
            hub, [("match_urlpattern", "https://example.com/books/:id")],
            headers: [("Authorization", "Bearer \(grant)")])
        defer { live.close() }
        let anonymous = try subscribe(hub, [("match_urlpattern", "https://example.com/books/:id")])
        defer { anonymous.close() }
        let ids = try publishEach(hub, ["https://example.com/books/2", "https://example.com/books/1"], isPrivate: true)
        let open = try publishEach(hub, ["https://example.com/books/3"])
        #expect(
            try live.events(2).map(\.id) == [ids["https://example.com/books/1"], open["https://example.com/books/3"]])
        #expect(try anonymous.next()?.id == open["https://example.com/books/3"])
        let replay = try subscribe(
            hub, [("match_urlpattern", "https://example.com/books/:id"), ("last_event_id", "earliest")],
            headers: [("Authorization", "Bearer \(grant)")])
        defer { replay.close() }
        #expect(
            try replay.events(2).map(\.id) == [ids["https://example.com/books/1"], open["https://example.com/books/3"]])
    }

    @Test("refused with 400 and a one-line reason: regexp groups, malformed, too many groups, too long, too many")
    func refused() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let cases: [(String, String)] = [
            ("https://example.com/(a+)+b", "regular-expression groups"),
            ("https://example.com/:id(\\d+)", "regular-expression groups"),
            ("https://example.com/{books", "not closed"),
            ("https://example.com/:id/:id", "used twice"),
            ("https://exa mple.com/*", "not a host"),
            ("https://example.com:99999/*", "not a port"),
            ("https://example.com/" + String(repeating: "*a", count: 33), "at most 32 groups"),
            ("https://example.com/" + String(repeating: "x", count: 2_100), "longer than 2048"),
        ]
        for (pattern, reason) in cases {
            let r = try subscribeRefused(hub, [("match_urlpattern", pattern)])
            #expect(r.status == 400, "\(pattern.prefix(60)): \(r.status)")
            #expect(r.text.contains(reason) && !r.text.dropLast().contains("\n"), "\(pattern.prefix(60)): \(r.text)")
        }
        let many = (0...32).map { ("match_urlpattern", "https://example.com/\($0)/:id") }
        #expect(try subscribeRefused(hub, many).status == 400)
        // draft-08's reserved prefix: a misspelt matcher type is still refused.
        #expect(try subscribeRefused(hub, [("match_urlPattern", "/x")]).status == 400)
    }

    @Test("hostile patterns cost bounded work: the update is judged, later updates flow")
    func hostile() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        // 31 wildcards then a byte the topic lacks: a backtracking engine tries ~n^31 splits.
        let pattern = "https://example.com/" + String(repeating: "*a", count: 31) + "b"
        let s = try subscribe(hub, [("match_urlpattern", pattern), ("match", "fence")])
        defer { s.close() }
        let long = "https://example.com/" + String(repeating: "a", count: 2_000)
        let ids = try publishEach(hub, [long, long + "b", "fence"])
        // Against 2,000 bytes the pattern spends its budget: not matching, as the draft requires.
        #expect(try s.events(1).map(\.id) == [ids["fence"]])
        // The matcher itself: linear, and the budget holds (the steps taken never pass it).
        let compiled = try URLPattern(pattern, base: HubURL.base(audience))
        let short = URLParts.parse("https://example.com/" + String(repeating: "a", count: 40) + "b", base: nil)
        #expect(compiled.matches(short))
        var budget = URLPattern.budget
        let path = Array(("/" + String(repeating: "a", count: 2_000)).utf8)
        #expect(compiled.components[5].matches(path, budget: &budget) == nil)
        #expect(budget > -compiled.components[5].states.count)
    }

    @Test("tokens: urlpattern matchers grant subscribe (private updates) and publish; a malformed one refuses")
    func tokenGrants() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let d = "https://mercure.rocks/authorization-detail"
        func detail(_ action: String, _ pattern: String) -> String {
            #"{"type":"\#(d)","actions":["\#(action)"],"topics":[{"match":\#(quoted(pattern)),"match_type":"urlpattern"}]}"#
        }
        let reader = token08(extraDetails: [detail("subscribe", "https://example.com/users/42/*")])
        let s = try subscribe(
            hub, [("match_urlpattern", "https://example.com/books/:id")],
            headers: [("Authorization", "Bearer \(reader)")])
        defer { s.close() }
        #expect(s.status == 200)
        let writer = token08(extraDetails: [detail("publish", "https://example.com/*")])
        func post(_ topics: [String]) throws -> SimpleResponse {
            try publish(hub, topics.map { ("topic", $0) } + [("private", "on")], token: writer)
        }
        // Alternate topics: the book (routing) and the user's namespace (authorization).
        #expect(try post(["https://example.com/books/2"]).status == 200)
        let mine = try post(["https://example.com/books/1", "https://example.com/users/42/books/1"])
        #expect(mine.status == 200)
        #expect(try s.next()?.id == mine.text)
        // The publish grant is a pattern too: another origin is refused.
        #expect(try post(["https://other.example/books/1"]).status == 403)
        let malformed = token08(extraDetails: [detail("publish", "https://example.com/(a+)+")])
        let r = try publish(hub, [("topic", "https://example.com/x")], token: malformed)
        #expect(r.status == 401 && r.text.contains("regular-expression groups"), "\(r.status) \(r.text)")
    }

    @Test("the metadata document lists urlpattern among the matcher types")
    func metadata() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let r = try httpRequest(port: hub.port, path: "/.well-known/oauth-protected-resource/.well-known/mercure")
        let doc = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
        #expect(doc?["mercure_matcher_types_supported"] as? [String] == ["exact", "urlpattern"])
    }
}
