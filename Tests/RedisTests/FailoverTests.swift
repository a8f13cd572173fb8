import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Asks one server or sentinel a single command (nil when it does not answer).
func ask(_ port: UInt16, _ command: [String]) -> RedisValue? {
    guard let c = try? RedisConnection(host: "127.0.0.1", port: Int(port), timeoutMilliseconds: 500) else { return nil }
    return try? c.command(command)
}

// Nested in the serialized suite: never alongside the other Redis tests (they share two cores, and
// Foundation's Process can miss an exit when children of concurrent tests die together).
extension SeveralHubsTests {
    @Suite("Redis Sentinel failover and acknowledgement")
    struct Failover {
        @Test("the primary is killed mid-publish: every acknowledged event reaches every hub once, in order")
        func primaryKilledMidPublish() throws {
            let figures = try runFailover(.killPrimary)
            #expect(figures.refusals > 0, "the failover was never seen by the publisher")
            #expect(figures.missingFromHistory == 0, "acknowledged events missing from the new primary's history")
        }

        @Test(
            "a manual failover with wait=1: hubs follow the new primary; only writes acknowledged during it can vanish")
        func manualFailoverWaitOne() throws {
            // runFailover checks that both hubs' streams stayed open and got every acknowledged
            // event once, in order, without a gap, and that the last 20 acknowledged are on the new
            // primary (the hubs followed it).
            let figures = try runFailover(.sentinelFailover, wait: "1")
            // Moving to the new primary costs the publish in flight a refusal or two (measured: 2).
            #expect(figures.refusals > 0, "the failover was never seen by the publisher")
            // Sentinel promotes a replica (REPLICAOF NO ONE) and only later demotes the old
            // primary, which meanwhile takes writes that its other replica confirms; both then
            // resynchronise from the new primary and drop them. Subscribers connected at the time
            // received them live; the history lacks them. The loss is measured and documented in
            // docs/REDIS.md, not asserted to be zero; what is asserted is where it can fall.
            print(
                "manual failover, wait=1: \(figures.missingFromHistory) of \(figures.acknowledged) acknowledged events "
                    + "missing from history, the last acknowledged "
                    + "\(String(format: "%.2f", figures.lastMissingAfterMove ?? 0)) s after the sentinels named the new primary"
            )
            #expect(
                figures.missing.allSatisfy { $0 >= figures.acknowledgedBeforeStrike },
                "an event acknowledged before the failover began is missing from history: \(figures.missing)")
            // The hubs ask the sentinels every second and then move: nothing acknowledged later
            // than that can be lost (the test notices the new primary up to 10 publishes late, and
            // publishes on for 2 s, so hubs that stayed on the old primary would lose 2 s more).
            #expect(
                (figures.lastMissingAfterMove ?? 0) < 1.5,
                "an event acknowledged \(figures.lastMissingAfterMove ?? 0) s after the sentinels named the new primary is missing"
            )
        }

        @Test("a manual failover with wait=all: nothing acknowledged is lost")
        func manualFailoverWaitAll() throws {
            let figures = try runFailover(.sentinelFailover, wait: "all")
            // The promoted replica stops confirming the moment it is promoted, so the old primary
            // acknowledges nothing more.
            #expect(figures.missingFromHistory == 0, "acknowledged events missing from the new primary's history")
            #expect(figures.refusals > 0)
        }

        @Test("the primary is killed with wait=all: publishing resumes with the one replica left, nothing lost")
        func primaryKilledWaitAll() throws {
            let figures = try runFailover(.killPrimary, wait: "all")
            #expect(figures.refusals > 0)
            #expect(figures.missingFromHistory == 0, "acknowledged events missing from the new primary's history")
        }

        @Test("WAIT: too few replicas in time means 503, and the event may still be delivered")
        func waitShortfallIsUnavailable() throws {
            // A lone server with wait=1: no replica can ever confirm.
            let redis = try RedisServer()
            let hub = try makeServer {
                $0.publishing = true
                $0.redis = try? RedisURL(redis.url + "?wait=1&waitTimeout=50")
                $0.redisKeyPrefix = uniquePrefix("wait")
            }
            defer { hub.stop() }
            let stream = try EventStreamClient(port: hub.port, path: "/events/w")
            try #require(eventually { hub.statistics.clients == 1 })
            let r = try postEvent(port: hub.port, channel: "w", data: "unconfirmed")
            #expect(r.status == 503)
            // Stored on the primary all the same: at least once, not exactly once.
            #expect(try stream.next(timeout: 5)?.data == "unconfirmed")
        }

        @Test("sentinel and plain URLs parse, with their acknowledgement defaults")
        func urls() throws {
            let s = try RedisURL("redis-sentinel://:pw@10.0.0.1:26379,10.0.0.2,[::1]:26380/main/2?waitTimeout=100")
            #expect(s.sentinels.map(\.description) == ["10.0.0.1:26379", "10.0.0.2:26379", "[::1]:26380"])
            #expect(s.masterName == "main" && s.database == 2 && s.password == "pw")
            // The default with sentinels is wait=auto (FailoverAckTests); it was wait=1.
            #expect(s.waitForConnectedReplicas && s.waitReplicas == 0 && s.waitTimeoutMilliseconds == 100)
            #expect(s.description == "redis-sentinel://10.0.0.1:26379,10.0.0.2:26379,[::1]:26380/main")
            let plain = try RedisURL("redis://h:7000/3")
            #expect(plain.waitReplicas == 0 && !plain.usesSentinel && plain.port == 7000 && plain.database == 3)
            #expect(try RedisURL("redis://h?wait=2").waitReplicas == 2)
            let all = try RedisURL("redis-sentinel://h/m?wait=all")
            #expect(all.waitForEveryReplica && all.waitReplicas == 0)
            #expect(try !RedisURL("redis-sentinel://h/m?wait=all&wait=0").waitForEveryReplica)
            for bad in [
                "redis-sentinel://h:1", "redis-sentinel://h:1/", "redis://h?wait=x", "redis://h?nope=1",
                "redis://h?waitTimeout=0", "rediss://h", "redis-sentinel://h:1,:2/m", "redis://h?wait=all",
            ] {
                #expect(throws: MicroSSEError.self, "\(bad)") { try RedisURL(bad) }
            }
        }

        @Test("a channel's stream in Redis stays within about historyBytes")
        func historyBytesBound() throws {
            let redis = try RedisServer()
            let prefix = uniquePrefix("bytes")
            let budget = 64 << 10
            let hub = try makeServer {
                $0.publishing = true
                $0.historyCount = 100_000
                $0.historyBytes = budget
                $0.redis = try? RedisURL(redis.url)
                $0.redisKeyPrefix = prefix
            }
            defer { hub.stop() }
            let payload = String(repeating: "x", count: 1_000)
            var ids: [String] = []
            for i in 0..<400 { ids.append(try hub.publish("\(i) \(payload)", to: "big")) }
            let key = "\(prefix):ch:big"
            let length = try #require(ask(redis.port, ["XLEN", key]).flatMap { Int($0.text ?? "") })
            let counted = try #require(
                ask(redis.port, ["HGET", "\(prefix):sizes", "big"]).flatMap { Int($0.text ?? "") })
            let memory = try #require(
                ask(redis.port, ["MEMORY", "USAGE", key, "SAMPLES", "0"]).flatMap { Int($0.text ?? "") })
            let entry = 1_000 + 4 + 2 + 32  // data, event name (none), id (none), 32: about 1,038 bytes
            // The budget plus the boundary entry; not much less either.
            #expect(counted <= budget + entry)
            #expect(counted >= budget - entry)
            #expect(abs(length - (budget / entry + 1)) <= 1, "\(length) entries")
            // What Redis itself spends on the stream is more (listpack nodes, allocator size classes:
            // about 1.4 times for 1 KB events) but bounded by the same rule.
            #expect(memory <= budget * 3 / 2, "stream uses \(memory) bytes of Redis memory for a \(budget) budget")
            print("history bytes: \(length) entries, \(counted) counted bytes, \(memory) bytes of Redis memory")
            // Resuming from before the retained history says so; from the boundary it does not.
            let first = try #require(
                ask(redis.port, ["XRANGE", key, "-", "+", "COUNT", "1"])?.array?.first?.array?.first?.text)
            let exact = try EventStreamClient(port: hub.port, path: "/events/big", headers: [("Last-Event-ID", first)])
            #expect(exact.head.header("MicroSSE-Gap") == nil)
            let late = try EventStreamClient(port: hub.port, path: "/events/big", headers: [("Last-Event-ID", ids[0])])
            #expect(late.head.header("MicroSSE-Gap") == "evicted")
        }
    }
}

enum Disruption { case killPrimary, sentinelFailover }

struct FailoverFigures {
    var refusals = 0
    var missingFromHistory = 0
    /// Positions (in acknowledgement order) of the acknowledged events missing from history.
    var missing: [Int] = []
    /// Events acknowledged, in all and before the disruption struck.
    var acknowledged = 0
    var acknowledgedBeforeStrike = 0
    /// Seconds from the sentinels naming the new primary to the acknowledgement of the last event
    /// missing from history (nil when none is missing).
    var lastMissingAfterMove: Double?
    /// Seconds the publisher spent between a first refusal and the acknowledgement, in all.
    var unavailableSeconds = 0.0
}

/// Three servers and three sentinels, two hubs with a subscriber each, a publisher of numbered
/// events to hub A retrying 503s; `disruption` strikes after 40 events. Checks that every
/// acknowledged event reached both subscribers exactly once, in order, on the streams they
/// opened; returns the publisher's refusals and how many acknowledged events the new primary's
/// history lacks.
func runFailover(_ disruption: Disruption, wait: String = "1") throws -> FailoverFigures {
    let started = now()
    let cluster = try RedisSentinelCluster()
    // Ready when every sentinel knows both replicas and the two other sentinels, and both
    // replicas are in sync with the primary.
    try #require(
        eventually(timeout: 20) {
            let linked = cluster.servers.dropFirst().allSatisfy {
                ask($0.port, ["ROLE"])?.array.map { $0.count > 3 && $0[3].text == "connected" } ?? false
            }
            return linked
                && cluster.sentinels.allSatisfy {
                    ask($0.port, ["SENTINEL", "replicas", cluster.masterName])?.array?.count == 2
                        && ask($0.port, ["SENTINEL", "sentinels", cluster.masterName])?.array?.count == 2
                }
        }, "the sentinels never saw the whole cluster")
    let url = try RedisURL(cluster.url(query: "wait=\(wait)&waitTimeout=250"))
    let prefix = uniquePrefix("failover")
    let hubs = try (0..<2).map { _ in
        try makeServer {
            $0.publishing = true
            $0.redis = url
            $0.redisKeyPrefix = prefix
        }
    }
    defer { hubs.forEach { $0.stop() } }
    let streams = try hubs.map { try EventStreamClient(port: $0.port, path: "/events/orders") }
    try #require(eventually { hubs.allSatisfy { $0.statistics.clients == 1 } })

    // The publisher: numbered events to hub A, each retried on 503 until acknowledged.
    let total = 100
    var acknowledged: [(data: String, id: String)] = []
    var ackedAt: [Double] = []
    var figures = FailoverFigures()
    var retriedEvents = 0
    var struckAt = 0.0
    var firstAckAfter = 0.0
    let primaryPID = try #require(cluster.servers[0].processIdentifier)
    let sentinelPort = cluster.sentinels[0].port
    let name = cluster.masterName
    let striker = Thread {
        switch disruption {
        case .killPrimary: kill(primaryPID, SIGKILL)
        case .sentinelFailover: _ = ask(sentinelPort, ["SENTINEL", "FAILOVER", name])
        }
    }
    // Publish `total` events, and on until the sentinels name another primary and for 2 s more
    // (hubs follow within a second).
    let oldPort = cluster.servers[0].port
    var movedAt: Double?
    var i = 0
    while i < total || movedAt.map({ now() < $0 + 2 }) ?? true {
        try #require(now() - started < 50, "the sentinels never named another primary")
        if movedAt == nil && i > 40 && i % 10 == 0,
            let named = ask(sentinelPort, ["SENTINEL", "get-master-addr-by-name", name])?.array,
            named.count == 2, named[1].text != String(oldPort)
        {
            movedAt = now()
        }
        if i == 40 {
            // Mid-publish: the disruption races the next publishes.
            struckAt = now()
            figures.acknowledgedBeforeStrike = acknowledged.count
            striker.start()
        }
        let deadline = now() + 20
        var refusedThis = false
        let attemptStarted = now()
        while true {
            // No answer in time (the hub's Redis worker is still finding the new primary) counts
            // as refused, like a 503: the publisher retries; the event may still be stored.
            guard let r = try? postEvent(port: hubs[0].port, channel: "orders", data: "o\(i)") else {
                figures.refusals += 1
                refusedThis = true
                try #require(now() < deadline, "o\(i) was never acknowledged")
                continue
            }
            if let id = publishedID(r) {
                acknowledged.append(("o\(i)", id))
                ackedAt.append(now())
                if struckAt > 0 && firstAckAfter == 0 && figures.refusals > 0 { firstAckAfter = now() }
                break
            }
            #expect(r.status == 503, "a publish during the failover is refused with 503, got \(r.status)")
            figures.refusals += 1
            refusedThis = true
            try #require(now() < deadline, "o\(i) was never acknowledged")
            usleep(10_000)
        }
        if refusedThis {
            retriedEvents += 1
            figures.unavailableSeconds += now() - attemptStarted
        }
        i += 1
        usleep(2_000)
    }
    #expect(eventually { striker.isFinished })
    // A replica was promoted, and the sentinels name it.
    let promoted = cluster.servers.dropFirst().first { ask($0.port, ["ROLE"])?.array?.first?.text == "master" }
    try #require(promoted != nil, "no replica became the primary")
    if disruption == .killPrimary { cluster.servers[0].stop() }  // reaps it

    // Every hub's open stream: every acknowledged id exactly once, in publish order.
    let ackedIDs = acknowledged.map(\.id)
    let ackedSet = Set(ackedIDs)
    var delivered: [Int] = []
    for (n, stream) in streams.enumerated() {
        var seen: [ParsedEvent] = []
        let deadline = now() + 20
        while Set(seen.map(\.lastEventID)).isSuperset(of: ackedSet) == false && now() < deadline {
            if let e = try stream.next(timeout: 0.5) { seen.append(e) }
        }
        // Anything else queued (a late duplicate would show here).
        while let e = try stream.next(timeout: 0.3) { seen.append(e) }
        let ofAcked = seen.filter { ackedSet.contains($0.lastEventID) }
        #expect(ofAcked.map(\.lastEventID) == ackedIDs, "hub \(n): acknowledged events once each, in order")
        #expect(ofAcked.map(\.data) == acknowledged.map(\.data))
        #expect(!seen.contains { $0.type == "microsse.gap" }, "hub \(n) sent a gap")
        // The same connection, still open.
        #expect(!stream.brokenOff && !stream.endedCleanly, "hub \(n)'s stream was closed")
        #expect(hubs[n].statistics.clients == 1)
        delivered.append(seen.count)
    }
    // The new primary's history of the channel.
    let stored = Set(
        (ask(promoted!.port, ["XRANGE", "\(prefix):ch:orders", "-", "+"])?.array ?? []).compactMap {
            $0.array?.first?.text
        })
    // Stored under their positions in the global stream (the ids name them: see docs/DESIGN.md).
    let ackedEntries = ackedIDs.map { RedisStreamID(position: $0)?.description ?? $0 }
    figures.missing = ackedEntries.indices.filter { !stored.contains(ackedEntries[$0]) }
    figures.missingFromHistory = figures.missing.count
    figures.acknowledged = ackedIDs.count
    if let last = figures.missing.last, let movedAt { figures.lastMissingAfterMove = ackedAt[last] - movedAt }
    // The hubs followed the new primary: what they acknowledged last is in its history.
    #expect(
        Set(ackedEntries.suffix(20)).isSubset(of: stored), "the last acknowledged events are not on the new primary")
    let failover = firstAckAfter > 0 ? firstAckAfter - struckAt : 0
    print(
        "failover figures (\(disruption), wait=\(wait)): \(String(format: "%.2f", failover)) s from the disruption to the next 202 after a 503, "
            + "\(String(format: "%.2f", figures.unavailableSeconds)) s refused in all, "
            + "\(figures.refusals) responses 503 over \(retriedEvents) events, \(acknowledged.count) acknowledged, "
            + "delivered per hub \(delivered) (beyond \(acknowledged.count): unacknowledged attempts that were stored), "
            + "\(figures.missingFromHistory) acknowledged missing from history, test \(String(format: "%.1f", now() - started)) s"
    )
    #expect(now() - started < 60)
    return figures
}
