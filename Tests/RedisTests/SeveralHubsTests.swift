import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A hub (in this process) on an ephemeral port, sharing `redis` under `prefix`.
func makeHub(_ redis: RedisServer, prefix: String, history: Int = 1_000) throws -> Server {
    let url = try RedisURL(redis.url)
    return try makeServer {
        $0.publishing = true
        $0.historyCount = history
        $0.redis = url
        $0.redisKeyPrefix = prefix
    }
}

/// A Redis key prefix of its own for each test, so tests can share one redis-server.
func uniquePrefix(_ name: String) -> String { "t\(getpid())-\(name)-\(UInt32.random(in: 0...UInt32.max))" }

/// Publishes over HTTP, retrying 503s (Redis away) until `deadline`; returns the id on 202.
func publishRetrying(port: UInt16, channel: String, data: String, deadline: Double) throws -> String? {
    while now() < deadline {
        let r = try postEvent(port: port, channel: channel, data: data)
        if let id = publishedID(r) { return id }
        guard r.status == 503 else { throw TestClientError("publish got \(r.status): \(r.text)") }
        usleep(20_000)
    }
    return nil
}

@Suite("Several hubs sharing one Redis", .serialized)
struct SeveralHubsTests {
    @Test("an event published on hub A reaches subscribers on hubs B and C, every one, in order")
    func fanOutAcrossHubs() throws {
        let redis = try RedisServer()
        let prefix = uniquePrefix("fanout")
        let a = try makeHub(redis, prefix: prefix)
        let b = try makeHub(redis, prefix: prefix)
        let c = try makeHub(redis, prefix: prefix)
        defer { [a, b, c].forEach { $0.stop() } }
        let onB = try EventStreamClient(port: b.port, path: "/events/prices")
        let onC = try EventStreamClient(port: c.port, path: "/events/prices")
        try #require(eventually { b.statistics.clients == 1 && c.statistics.clients == 1 })
        var ids: [String] = []
        for i in 0..<200 { ids.append(try a.publish("tick \(i)", to: "prices")) }
        for stream in [onB, onC] {
            let events = try stream.events(200)
            #expect(events.map(\.data) == (0..<200).map { "tick \($0)" })
            #expect(events.map(\.lastEventID) == ids)
        }
        // Ids come from Redis: they increase across hubs and channels.
        let fromB = try b.publish("from b", to: "other")
        #expect(fromB > ids.last!)
    }

    @Test("a subscriber that moves from hub B to hub C with Last-Event-ID gets every event exactly once")
    func moveBetweenHubs() throws {
        let redis = try RedisServer()
        let prefix = uniquePrefix("move")
        let a = try makeHub(redis, prefix: prefix)
        let b = try makeHub(redis, prefix: prefix)
        let c = try makeHub(redis, prefix: prefix)
        defer { [a, b, c].forEach { $0.stop() } }
        let publishing = Atomic<Bool>(true)
        let published = Mutex<[String]>([])
        let publisher = Thread {
            var i = 0
            while publishing.load(ordering: .relaxed) && i < 2_000 {
                // Only what was acknowledged counts (a publish can time out on a loaded machine).
                if (try? a.publish("e\(i)", to: "feed")) != nil { published.withLock { $0.append("e\(i)") } }
                i += 1
                usleep(500)
            }
        }
        let first = try EventStreamClient(port: b.port, path: "/events/feed")
        publisher.start()
        let before = try first.events(50)
        first.close()
        let last = before.last!.lastEventID
        let second = try EventStreamClient(port: c.port, path: "/events/feed", headers: [("Last-Event-ID", last)])
        #expect(second.head.header("MicroSSE-Gap") == nil)
        #expect(eventually(timeout: 10) { published.withLock { $0.count } >= 300 })
        publishing.store(false, ordering: .relaxed)
        #expect(eventually(timeout: 10) { publisher.isFinished })
        let all = published.withLock { $0 }
        let rest = try second.events(all.count - before.count, timeout: 20)
        #expect((before + rest).map(\.data) == all)
    }

    @Test("a hub that is killed and restarted resumes its subscribers without loss")
    func hubKilledAndRestarted() throws {
        let redis = try RedisServer()
        // Real `microsse serve --redis` processes (default key prefix; this Redis is the test's own).
        var hubB = try ServerProcess(["serve", "--port", "0", "--heartbeat", "0", "--redis", redis.url])
        let sub = try EventStreamClient(port: hubB.port, path: "/events/jobs")
        try #require(
            eventually { (try? httpRequest(port: hubB.port, path: "/stats").text.contains("\"clients\":1")) == true })
        var sent: [String] = []
        for i in 0..<20 {
            let id = try #require(
                try publishRetrying(port: hubB.port, channel: "jobs", data: "job \(i)", deadline: now() + 5))
            sent.append(id)
        }
        let got = try sub.events(20)
        #expect(got.map(\.lastEventID) == sent)
        hubB.signal(SIGKILL)
        _ = hubB.waitForExit()
        // Published through another hub while B is down.
        let c = try ServerProcess(["serve", "--port", "0", "--heartbeat", "0", "--redis", redis.url])
        for i in 20..<30 {
            sent.append(
                try #require(try publishRetrying(port: c.port, channel: "jobs", data: "job \(i)", deadline: now() + 5)))
        }
        hubB = try ServerProcess(["serve", "--port", "0", "--heartbeat", "0", "--redis", redis.url])
        let resumed = try EventStreamClient(
            port: hubB.port, path: "/events/jobs", headers: [("Last-Event-ID", got.last!.lastEventID)])
        #expect(resumed.head.header("MicroSSE-Gap") == nil)
        let rest = try resumed.events(10)
        #expect(rest.map(\.data) == (20..<30).map { "job \($0)" })
        #expect(rest.map(\.lastEventID) == Array(sent[20...]))
        hubB.signal(SIGTERM)
        c.signal(SIGTERM)
        #expect(hubB.waitForExit(timeout: 30) == 0)
        #expect(c.waitForExit(timeout: 30) == 0)
    }

    @Test("/readyz is 503 with the reason while the hub's Redis is unreachable, 200 again once it is back")
    func readinessFollowsRedis() throws {
        let redis = try RedisServer()
        let hub = try makeHub(redis, prefix: uniquePrefix("ready"))
        defer { hub.stop() }
        #expect(try httpRequest(port: hub.port, path: "/readyz").status == 200)
        redis.stop()
        var reason = ""
        #expect(
            eventually(timeout: 10) {
                guard let r = try? httpRequest(port: hub.port, path: "/readyz") else { return false }
                reason = r.text
                return r.status == 503
            }, "readyz while Redis is down: \(reason)")
        #expect(reason.contains("Redis"), "the reason names Redis: \(reason)")
        #expect(try httpRequest(port: hub.port, path: "/healthz").status == 200)  // still alive
        try redis.start()
        #expect(eventually(timeout: 10) { (try? httpRequest(port: hub.port, path: "/readyz"))?.status == 200 })
    }

    @Test("Redis stopped and restarted while publishers retry: nothing acknowledged is lost, nothing is duplicated")
    func redisOutage() throws {
        let redis = try RedisServer(persistent: true)
        let prefix = uniquePrefix("outage")
        let a = try makeHub(redis, prefix: prefix)
        let b = try makeHub(redis, prefix: prefix)
        defer { [a, b].forEach { $0.stop() } }
        let onA = try EventStreamClient(port: a.port, path: "/events/orders")
        let onB = try EventStreamClient(port: b.port, path: "/events/orders")
        try #require(eventually { a.statistics.clients == 1 && b.statistics.clients == 1 })
        var acknowledged: [String] = []
        var refusals = 0
        for i in 0..<60 {
            if i == 20 { redis.stop() }
            let deadline = now() + 15
            var done = false
            while !done && now() < deadline {
                let r = try httpRequest(port: a.port, method: "POST", path: "/events/orders", body: Array("o\(i)".utf8))
                if r.status == 202 {
                    acknowledged.append("o\(i)")
                    done = true
                } else {
                    #expect(r.status == 503, "while Redis is away a publish is refused with 503, got \(r.status)")
                    refusals += 1
                    if i == 20 && refusals == 3 { try redis.start() }
                    usleep(20_000)
                }
            }
            #expect(done, "o\(i) was never acknowledged")
        }
        #expect(refusals > 0, "the outage was never seen by a publisher")
        for stream in [onA, onB] {
            let events = try stream.events(acknowledged.count, timeout: 20)
            #expect(events.map(\.data) == acknowledged)
            #expect(try stream.next(timeout: 0.3) == nil, "an event arrived twice")
        }
        // Open streams stayed open through the outage.
        #expect(a.statistics.clients == 1 && b.statistics.clients == 1)
    }

    @Test("an id from before Redis lost its data gets the gap signal, not a wrong replay")
    func idsFromBeforeARedisRestart() throws {
        let redis = try RedisServer()  // not persistent: a restart empties it
        let prefix = uniquePrefix("restart")
        let a = try makeHub(redis, prefix: prefix)
        defer { a.stop() }
        let old = try a.publish("before", to: "news")
        redis.stop()
        try redis.start()
        // The hub reconnects on the next publish (503s until then).
        var fresh: String?
        #expect(
            eventually(timeout: 10) {
                fresh = try? a.publish("after", to: "news")
                return fresh != nil
            })
        let stream = try EventStreamClient(port: a.port, path: "/events/news", headers: [("Last-Event-ID", old)])
        #expect(stream.head.header("MicroSSE-Gap") == "evicted")
        let events = try stream.events(2)
        #expect(events[0].type == "microsse.gap")
        #expect(events[1].data == "after")
    }

    @Test("history is capped per channel in Redis, and resuming past the cap says so")
    func historyCap() throws {
        let redis = try RedisServer()
        let hub = try makeHub(redis, prefix: uniquePrefix("cap"), history: 3)
        defer { hub.stop() }
        let ids = try (0..<6).map { try hub.publish("e\($0)", to: "c") }
        let exact = try EventStreamClient(port: hub.port, path: "/events/c", headers: [("Last-Event-ID", ids[2])])
        #expect(exact.head.header("MicroSSE-Gap") == nil)
        #expect(try exact.events(3).map(\.data) == ["e3", "e4", "e5"])
        let late = try EventStreamClient(port: hub.port, path: "/events/c?lastEventId=\(ids[0])")
        #expect(late.head.header("MicroSSE-Gap") == "evicted")
        // Then everything still retained after the id: e2 is the boundary entry Redis keeps.
        let events = try late.events(5)
        #expect(events[0].type == "microsse.gap")
        #expect(events[0].data == #"{"lastEventId":"\#(ids[0])","reason":"evicted"}"#)
        #expect(events.dropFirst().map(\.data) == ["e2", "e3", "e4", "e5"])
    }

    @Test("Redis unreachable at start: a clear error and a non-zero exit code")
    func unreachableAtStart() throws {
        let port = try freePort()
        let (status, message) = try runToExit(["serve", "--port", "0", "--redis", "redis://127.0.0.1:\(port)"])
        #expect(status != 0)
        #expect(message.contains("cannot connect to Redis at redis://127.0.0.1:\(port)"))
    }
}
