// Streams of channels on several shards: fresh ones share their set's log, a resumed one moves
// to it once caught up.
import Foundation
import MicroSSE
import MicroSSECore
import MicroSSERedis
import MicroSSETestSupport
import Testing

extension SeveralHubsTests.Shards {
    @Test(
        "two fresh streams of one set across shards share its log; the later one resumes from its own first id exactly"
    )
    func sharedSetLog() throws {
        let shards = try (0..<2).map { _ in try RedisServer() }
        let hub = try makeShardedHub(shards, prefix: uniquePrefix("setlog"))
        defer { hub.stop() }
        let a = channels(on: 0, of: 2, 1, tag: "a")[0]
        let b = channels(on: 1, of: 2, 1, tag: "b")[0]
        let early = try EventStreamClient(port: hub.port, path: "/events?channel=\(a)&channel=\(b)")
        try #require(eventually { hub.statistics.clients == 1 })
        for (i, c) in [a, b, a].enumerated() { try hub.publish("e\(i)", to: c) }
        // Shards have no common order: a's events in order, b's in order.
        #expect(Set(try early.events(3).map(\.data)) == ["e0", "e1", "e2"])
        let late = try EventStreamClient(port: hub.port, path: "/events?channel=\(b)&channel=\(a)")
        try #require(eventually { hub.statistics.clients == 2 })
        for (i, c) in [b, a, b].enumerated() { try hub.publish("e\(i + 3)", to: c) }
        let seenEarly = try early.events(3)
        let seenLate = try late.events(3)
        #expect(Set(seenLate.map(\.data)) == ["e3", "e4", "e5"])
        #expect(
            seenLate.map(\.data) == seenEarly.map(\.data) && seenLate.map(\.id) == seenEarly.map(\.id), "one log")
        let resumed = try EventStreamClient(
            port: hub.port, path: "/events?channel=\(a)&channel=\(b)",
            headers: [("Last-Event-ID", try #require(seenLate[0].id))])
        #expect(resumed.head.header("MicroSSE-Gap") == nil)
        #expect(Set(try resumed.events(2).map(\.data)) == Set(seenLate.dropFirst().map(\.data)))
        #expect(try resumed.next(timeout: 0.3) == nil)
    }

    @Test("a stream resumed across shards reads alone, then its set's log once caught up; its ids stay exact")
    func resumedMovesToSetLog() throws {
        let shards = try (0..<2).map { _ in try RedisServer() }
        let hub = try makeShardedHub(shards, prefix: uniquePrefix("move"))
        defer { hub.stop() }
        let broker = try #require(hub.broker as? ShardedRedisBroker)
        let a = channels(on: 0, of: 2, 1, tag: "a")[0]
        let b = channels(on: 1, of: 2, 1, tag: "b")[0]
        let path = "/events?channel=\(a)&channel=\(b)"
        let first = try EventStreamClient(port: hub.port, path: path)
        try #require(eventually { hub.statistics.clients == 1 })
        try hub.publish("e0", to: a)
        let id = try #require(try first.next()?.id)
        first.close()
        try #require(eventually { hub.statistics.clients == 0 && broker.crossCounts == (0, 0) })
        try hub.publish("e1", to: b)
        let resumed = try EventStreamClient(port: hub.port, path: path, headers: [("Last-Event-ID", id)])
        #expect(resumed.head.header("MicroSSE-Gap") == nil)
        #expect(try resumed.next()?.data == "e1")
        #expect(broker.crossCounts == (1, 0), "reads alone after its replay")
        try hub.publish("e2", to: a)
        #expect(try resumed.next()?.data == "e2")
        #expect(eventually { broker.crossCounts == (0, 1) }, "moved to the set's log: \(broker.crossCounts)")
        try hub.publish("e3", to: b)
        try hub.publish("e4", to: a)
        let later = try resumed.events(2)
        #expect(Set(later.map(\.data)) == ["e3", "e4"])
        let again = try EventStreamClient(
            port: hub.port, path: path, headers: [("Last-Event-ID", try #require(later[0].id))])
        #expect(again.head.header("MicroSSE-Gap") == nil)
        #expect(try again.events(1).map(\.data) == [later[1].data])
        #expect(try again.next(timeout: 0.3) == nil)
    }
}
