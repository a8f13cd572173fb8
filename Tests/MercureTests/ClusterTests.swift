import Foundation
import MicroSSE
import MicroSSEMercure
import MicroSSERedis
import MicroSSETestSupport
import Testing

/// Mercure hubs sharing one real redis-server (`--redis`), each on its own port.
func clusterHub(
    _ redis: RedisServer, prefix: String, legacy: Bool = false, subscriptions: Bool = false,
    _ configure: (inout ServerConfiguration) -> Void = { _ in }
) throws -> Server {
    try mercureHub(legacy: legacy) {
        $0.redis = try? RedisURL(redis.url)
        $0.redisKeyPrefix = prefix
        $0.mercure.subscriptions = subscriptions
        configure(&$0)
    }
}

func clusterPrefix(_ name: String) -> String { "mc-\(name)-\(UInt32.random(in: 0...UInt32.max))" }

@Suite("Mercure: clustered over Redis", .serialized)
struct ClusterTests {
    let publisher = token08(publish: ["*"])

    @Test("an update published to hub A reaches matching subscribers on A and B; private ones only with the grant")
    func publishOnAReceiveOnB() throws {
        let redis = try RedisServer()
        let prefix = clusterPrefix("fanout")
        let a = try clusterHub(redis, prefix: prefix)
        defer { a.stop() }
        let b = try clusterHub(redis, prefix: prefix)
        defer { b.stop() }
        let anonymousB = try subscribe(b, [("match", "https://example.com/books/1")])
        defer { anonymousB.close() }
        let grantedB = try subscribe(
            b, [("match", "https://example.com/books/1")],
            headers: [("Authorization", "Bearer " + token08(subscribe: ["https://example.com/books/1"]))])
        defer { grantedB.close() }
        let onA = try subscribe(a, [("match", "*")])
        defer { onA.close() }

        let secret = try publish(
            a, [("topic", "https://example.com/books/1"), ("data", "secret"), ("private", "on")], token: publisher)
        #expect(secret.status == 200)
        let open = try publish(
            a, [("topic", "https://example.com/books/1"), ("data", "line 1\nline 2"), ("type", "book")],
            token: publisher)
        #expect(open.status == 200)
        #expect(isUUIDv4URN(secret.text) && isUUIDv4URN(open.text))

        let granted = try grantedB.events(2)
        #expect(granted.map(\.id) == [secret.text, open.text])
        #expect(granted.map(\.data) == ["secret", "line 1\nline 2"])
        #expect(granted[1].type == "book")
        // The anonymous streams' next update is the public one: the private one never came.
        #expect(try anonymousB.next(timeout: 10)?.id == open.text)
        #expect(try onA.next(timeout: 10)?.id == open.text)
    }

    @Test(
        "a resume on another hub is exact (also right after the publish, also on a hub that joined later); an unknown id answers earliest"
    )
    func resumeAcrossHubs() throws {
        let redis = try RedisServer()
        let prefix = clusterPrefix("resume")
        let a = try clusterHub(redis, prefix: prefix)
        defer { a.stop() }
        let b = try clusterHub(redis, prefix: prefix)
        defer { b.stop() }
        let watcher = try subscribe(b, [("match", "t")])
        defer { watcher.close() }
        let ids = try (0..<4).map { i in
            try publish(a, [("topic", i == 1 ? "other" : "t"), ("data", "u\(i)")], token: publisher).text
        }
        // B has seen them once its live stream has the last one.
        #expect(try watcher.events(3).map(\.id) == [ids[0], ids[2], ids[3]])

        let resumed = try subscribe(b, [("match", "t")], headers: [("Last-Event-ID", ids[0])])
        defer { resumed.close() }
        #expect(resumed.head.header("Mercure-Last-Event-ID") == ids[0])
        #expect(try resumed.events(2).map(\.id) == [ids[2], ids[3]])

        // A hub that joined after these updates has the broker place the id: exact too.
        let c = try clusterHub(redis, prefix: prefix)
        defer { c.stop() }
        let late = try subscribe(c, [("match", "t"), ("last_event_id", ids[0])])
        defer { late.close() }
        #expect(late.head.header("Mercure-Last-Event-ID") == ids[0])
        let next = try publish(b, [("topic", "t"), ("data", "after")], token: publisher).text
        #expect(try late.events(3, timeout: 10).map(\.id) == [ids[2], ids[3], next])

        // A resume on B right after a publish on A (B may not have it yet): exact.
        for _ in 0..<5 {
            let x = try publish(a, [("topic", "t"), ("data", "x")], token: publisher).text
            let quick = try subscribe(b, [("match", "t")], headers: [("Last-Event-ID", x)])
            defer { quick.close() }
            #expect(quick.head.header("Mercure-Last-Event-ID") == x)
            let y = try publish(a, [("topic", "t"), ("data", "y")], token: publisher).text
            #expect(try quick.next(timeout: 10)?.id == y)
        }

        // An id no hub issued is answered earliest, and the whole history follows.
        let unknown = try subscribe(
            b, [("match", "other"), ("last_event_id", "urn:uuid:00000000-0000-4000-8000-000000000000")])
        defer { unknown.close() }
        #expect(unknown.head.header("Mercure-Last-Event-ID") == "earliest")
        #expect(try unknown.next(timeout: 10)?.id == ids[1])
    }

    @Test("a publisher's own id crosses hubs verbatim")
    func publisherID() throws {
        let redis = try RedisServer()
        let prefix = clusterPrefix("ids")
        let a = try clusterHub(redis, prefix: prefix)
        defer { a.stop() }
        let b = try clusterHub(redis, prefix: prefix)
        defer { b.stop() }
        let s = try subscribe(b, [("match", "t")])
        defer { s.close() }
        let r = try publish(
            a, [("topic", "t"), ("id", "https://example.com/events/42"), ("retry", "1500")], token: publisher)
        #expect(r.status == 200 && r.text == "https://example.com/events/42")
        #expect(try s.next(timeout: 10)?.id == "https://example.com/events/42")
        // An id in the form of MicroSSE's positions is refused.
        let tilde = try publish(a, [("topic", "t"), ("id", "~1.0.x.1")], token: publisher)
        #expect(tilde.status == 400)
    }

    @Test("the envelope keeps every update as a single hub delivers it: line breaks, empty data, spaces, Unicode")
    func envelopeFidelity() throws {
        let redis = try RedisServer()
        let prefix = clusterPrefix("fidelity")
        let a = try clusterHub(redis, prefix: prefix)
        defer { a.stop() }
        let b = try clusterHub(redis, prefix: prefix)
        defer { b.stop() }
        let single = try mercureHub()
        defer { single.stop() }
        let topic = "https://example.com/ä b/{x}?q=1#f"
        let onB = try subscribe(b, [("match", topic)])
        defer { onB.close() }
        let alone = try subscribe(single, [("match", topic)])
        defer { alone.close() }
        let datas = ["", "\n", "a\r\nb\rc\nd", "\nleading", "trailing\n\n", "topic x\n\nmercure-update 1", "é ✓ 𝄞"]
        for data in datas {
            for hub in [a, single] {
                let r = try publish(
                    hub, [("topic", topic), ("data", data), ("type", "t y"), ("retry", "10")], token: publisher)
                #expect(r.status == 200)
            }
        }
        let clustered = try onB.events(datas.count, timeout: 10)
        let reference = try alone.events(datas.count, timeout: 10)
        #expect(clustered.map(\.data) == reference.map(\.data))
        #expect(clustered.map(\.type) == reference.map(\.type))
    }

    @Test("an update larger than --max-publish-bytes with its envelope is refused with 413")
    func oversized() throws {
        let redis = try RedisServer()
        let a = try clusterHub(redis, prefix: clusterPrefix("big")) { $0.maxPublishBytes = 1_024 }
        defer { a.stop() }
        let data = String(repeating: "x", count: 1_000)
        let r = try publish(a, [("topic", "t"), ("data", data)], token: publisher)
        #expect(r.status == 413)
        #expect(r.text.contains("max-publish-bytes"))
        #expect(try publish(a, [("topic", "t"), ("data", "small")], token: publisher).status == 200)
    }

    @Test("the reserved channel cannot be named by /events/ clients")
    func reservedChannel() throws {
        let redis = try RedisServer()
        let a = try clusterHub(redis, prefix: clusterPrefix("reserved"))
        defer { a.stop() }
        let r = try httpRequest(
            port: a.port, path: "/events/mercure:updates", headers: [("Accept", "text/event-stream")])
        #expect(r.status == 400)
    }

    @Test("microsse serve --mercure --mercure-legacy --mercure-subscriptions --redis: two processes, one cluster")
    func binaries() throws {
        let redis = try RedisServer()
        let arguments = [
            "serve", "--port", "0", "--jwt-secret", TokenMint.secret, "--mercure", "--mercure-legacy",
            "--mercure-subscriptions", "--redis", redis.url,
        ]
        let a = try ServerProcess(arguments)
        defer { a.signal(SIGTERM) }
        let b = try ServerProcess(arguments)
        defer { b.signal(SIGTERM) }
        let token = token07(publish: ["*"], subscribe: ["*"])
        let watcher = try EventStreamClient(
            port: b.port, path: "/.well-known/mercure?topic=*", headers: [("Authorization", "Bearer " + token)])
        defer { watcher.close() }
        #expect(try watcher.next(timeout: 10)?.data.contains("\"Subscription\"") == true)  // its own
        let r = try httpRequest(
            port: a.port, method: "POST", path: "/.well-known/mercure",
            headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", "Bearer " + token)],
            body: Array("topic=t&data=from+a&private=on".utf8))
        #expect(r.status == 200)
        let event = try #require(try watcher.next(timeout: 10))
        #expect(event.id == r.text && event.data == "from a")
        let list = try httpRequest(
            port: a.port, path: "/.well-known/mercure/subscriptions", headers: [("Authorization", "Bearer " + token)])
        #expect(list.status == 200 && list.text.contains("\"topic\":\"*\""))
    }
}
