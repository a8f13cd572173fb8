import Foundation
import MicroSSE
import MicroSSEMercure
import MicroSSERedis
import MicroSSETestSupport
import Testing

/// A draft-08 token granting `subscribe` on `topics`, with a Mercure detail carrying `payload`.
func token08(subscribe topics: [String], payload: String) -> String {
    let list = topics.map { #"{"match":\#(quoted($0))}"# }.joined(separator: ",")
    let detail =
        #"{"type":"https://mercure.rocks/authorization-detail","actions":["subscribe"],"topics":[\#(list)],"payload":\#(payload)}"#
    return token08(extraDetails: [detail])
}

/// The JSON object of a response body or an event's data.
func jsonObject(_ text: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}

/// `GET path` with a bearer token.
func getJSON(_ server: Server, _ path: String, token: String?) throws -> SimpleResponse {
    try httpRequest(port: server.port, path: path, headers: token.map { [("Authorization", "Bearer " + $0)] } ?? [])
}

/// The subscribers listed by `GET /.well-known/mercure/subscriptions`.
func listedSubscribers(_ server: Server, token: String) throws -> [String] {
    let r = try getJSON(server, "/.well-known/mercure/subscriptions", token: token)
    guard r.status == 200, let list = jsonObject(r.text)?["subscriptions"] as? [[String: Any]] else { return [] }
    return list.compactMap { $0["subscriber"] as? String }
}

@Suite("Mercure: active subscriptions", .serialized)
struct SubscriptionsTests {
    let watcherToken = token08(subscribe: ["*"])

    @Test("memory: subscription events (private, type mercure, active true then false) and the API")
    func memory() throws {
        let hub = try mercureHub { $0.mercure.subscriptions = true }
        defer { hub.stop() }
        let watcher = try subscribe(hub, [("match", "*")], headers: [("Authorization", "Bearer " + watcherToken)])
        defer { watcher.close() }
        let own = try watcher.next(timeout: 10)  // the watcher's own subscription
        #expect(own?.type == "mercure")
        let anonymous = try subscribe(hub, [("match", "*")])
        defer { anonymous.close() }

        let topic = "https://example.com/books/1"
        let member = try subscribe(
            hub, [("match", topic)],
            headers: [("Authorization", "Bearer " + token08(subscribe: [topic], payload: #"{"name":"ada"}"#))])
        // The anonymous stream's own subscription (`*`) may come first.
        var next = try #require(try watcher.next(timeout: 10))
        if jsonObject(next.data)?["match"] as? String == "*" { next = try #require(try watcher.next(timeout: 10)) }
        let begun = next
        #expect(begun.type == "mercure")
        let doc = try #require(jsonObject(begun.data))
        #expect(doc["type"] as? String == "subscription")
        #expect(doc["match_type"] as? String == "exact")
        #expect(doc["match"] as? String == topic)
        #expect(doc["active"] as? Bool == true)
        #expect((doc["payload"] as? [String: Any])?["name"] as? String == "ada")
        let subscriber = try #require(doc["subscriber"] as? String)
        #expect(isUUIDv4URN(subscriber))
        let iri = "/.well-known/mercure/subscriptions/exact/https%3A%2F%2Fexample.com%2Fbooks%2F1/" + encode(subscriber)
        #expect(doc["id"] as? String == iri)

        // The API: the collection, the matcher's collection and the subscription itself.
        #expect(try listedSubscribers(hub, token: watcherToken).contains(subscriber))
        let all = try getJSON(hub, "/.well-known/mercure/subscriptions", token: watcherToken)
        #expect(all.header("Content-Type") == "application/json")
        #expect(all.header("Link")?.contains("rel=\"mercure\"") == true)
        let one = try getJSON(hub, iri, token: watcherToken)
        #expect(one.status == 200)
        #expect(jsonObject(one.text)?["subscriber"] as? String == subscriber)
        let collection = try getJSON(
            hub, "/.well-known/mercure/subscriptions/exact/https%3A%2F%2Fexample.com%2Fbooks%2F1", token: watcherToken)
        #expect(collection.status == 200)
        #expect((jsonObject(collection.text)?["subscriptions"] as? [Any])?.count == 1)
        let post = try httpRequest(
            port: hub.port, method: "POST", path: "/.well-known/mercure/subscriptions",
            headers: [("Authorization", "Bearer " + watcherToken)])
        #expect(post.status == 405 && post.header("Allow") == "GET")
        // Authorized by the subscribe grant on the path.
        #expect(try getJSON(hub, "/.well-known/mercure/subscriptions", token: nil).status == 401)
        #expect(try getJSON(hub, iri, token: token08(subscribe: ["https://example.com/other"])).status == 403)
        let narrow = try getJSON(hub, iri, token: token08(subscribe: [iri]))
        #expect(narrow.status == 200, "\(narrow.status) \(narrow.text)")

        member.close()
        let ended = try #require(try watcher.next(timeout: 10))
        #expect(jsonObject(ended.data)?["active"] as? Bool == false)
        #expect(jsonObject(ended.data)?["id"] as? String == iri)
        #expect(try getJSON(hub, iri, token: watcherToken).status == 404)
        // The anonymous stream saw none of them: the next event it gets is a public update.
        let r = try publish(hub, [("topic", "t"), ("data", "public")], token: token08(publish: ["*"]))
        #expect(try anonymous.next(timeout: 10)?.id == r.text)
    }

    @Test("a match_urlpattern subscription is announced with match_type urlpattern, and listed under it")
    func urlPattern() throws {
        let hub = try mercureHub { $0.mercure.subscriptions = true }
        defer { hub.stop() }
        let watcher = try subscribe(hub, [("match", "*")], headers: [("Authorization", "Bearer " + watcherToken)])
        defer { watcher.close() }
        _ = try watcher.next(timeout: 10)  // its own
        let pattern = "https://example.com/books/:id"
        let member = try subscribe(hub, [("match_urlpattern", pattern)])
        defer { member.close() }
        let event = try #require(try watcher.next(timeout: 10))
        let doc = try #require(jsonObject(event.data))
        #expect(doc["match_type"] as? String == "urlpattern")
        #expect(doc["match"] as? String == pattern)
        let collection = "/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid"
        #expect((doc["id"] as? String)?.hasPrefix(collection + "/") == true)
        let r = try getJSON(hub, collection, token: watcherToken)
        #expect(r.status == 200)
        #expect(jsonObject(r.text)?["id"] as? String == collection)
    }

    @Test("draft-07: JSON-LD documents with topic and lastEventID")
    func legacy() throws {
        let hub = try mercureHub(legacy: true) { $0.mercure.subscriptions = true }
        defer { hub.stop() }
        let token = token07(subscribe: ["*"])
        let s = try subscribe(hub, [("topic", "*")], headers: [("Authorization", "Bearer " + token)])
        defer { s.close() }
        _ = try s.next(timeout: 10)  // its own subscription
        let member = try subscribe(hub, [("topic", "https://example.com/{id}")])
        defer { member.close() }
        let event = try #require(try s.next(timeout: 10))
        let doc = try #require(jsonObject(event.data))
        #expect(doc["@context"] as? String == "https://mercure.rocks/")
        #expect(doc["type"] as? String == "Subscription")
        #expect(doc["topic"] as? String == "https://example.com/{id}")
        #expect(
            (doc["id"] as? String)?.hasPrefix(
                "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bid%7D/") == true)
        let r = try getJSON(hub, "/.well-known/mercure/subscriptions", token: token)
        #expect(r.header("Content-Type") == "application/ld+json")
        let list = try #require(jsonObject(r.text))
        #expect(list["type"] as? String == "Subscriptions")
        #expect(list["lastEventID"] as? String == event.id)
    }

    @Test(
        "cluster: the API on hub A lists a subscriber of hub B; its events reach a subscriber on A; a hub that joins later learns it"
    )
    func acrossHubs() throws {
        let redis = try RedisServer()
        let prefix = clusterPrefix("subs")
        let a = try clusterHub(redis, prefix: prefix, subscriptions: true)
        defer { a.stop() }
        let b = try clusterHub(redis, prefix: prefix, subscriptions: true)
        defer { b.stop() }
        let watcher = try subscribe(a, [("match", "*")], headers: [("Authorization", "Bearer " + watcherToken)])
        defer { watcher.close() }
        let own = try #require(try watcher.next(timeout: 10))
        let ownSubscriber = try #require(jsonObject(own.data)?["subscriber"] as? String)

        let member = try subscribe(b, [("match", "room")], headers: [("Authorization", "Bearer " + watcherToken)])
        let begun = try #require(try watcher.next(timeout: 10))
        let subscriber = try #require(jsonObject(begun.data)?["subscriber"] as? String)
        #expect(jsonObject(begun.data)?["match"] as? String == "room")
        #expect(try eventually(timeout: 10) { try listedSubscribers(a, token: watcherToken).contains(subscriber) })
        #expect(try eventually(timeout: 10) { try listedSubscribers(b, token: watcherToken).contains(ownSubscriber) })

        let c = try clusterHub(redis, prefix: prefix, subscriptions: true)
        defer { c.stop() }
        #expect(
            try eventually(timeout: 10) {
                Set(try listedSubscribers(c, token: watcherToken)).isSuperset(of: [subscriber, ownSubscriber])
            })

        member.close()
        let ended = try #require(try watcher.next(timeout: 10))
        #expect(jsonObject(ended.data)?["subscriber"] as? String == subscriber)
        #expect(jsonObject(ended.data)?["active"] as? Bool == false)
        #expect(try eventually(timeout: 10) { try !listedSubscribers(a, token: watcherToken).contains(subscriber) })

        // A hub that stops says goodbye: its subscriptions end on the other hubs at once.
        let lobby = try subscribe(c, [("match", "lobby")], headers: [("Authorization", "Bearer " + watcherToken)])
        defer { lobby.close() }
        let joined = try #require(try watcher.next(timeout: 10))
        let lobbySubscriber = try #require(jsonObject(joined.data)?["subscriber"] as? String)
        c.stop()
        let gone = try #require(try watcher.next(timeout: 10))
        #expect(jsonObject(gone.data)?["subscriber"] as? String == lobbySubscriber)
        #expect(jsonObject(gone.data)?["active"] as? Bool == false)
        #expect(try !listedSubscribers(a, token: watcherToken).contains(lobbySubscriber))
    }
}
