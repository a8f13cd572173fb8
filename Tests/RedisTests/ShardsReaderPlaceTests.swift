import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension SeveralHubsTests.Shards {
    @Test("a hub stalled past one shard's trim tells its stream across shards: one gap, the other shard's events all")
    func stalledPastOneShardsTrim() throws {
        let shards = try (0..<2).map { _ in try RedisServer() }
        let stalled = try ServerProcess(
            ["serve", "--port", "0", "--heartbeat", "0"] + shards.flatMap { ["--redis", $0.url] })
        let urls = try shards.map { try RedisURL($0.url) }
        let publisher = try makeServer {
            $0.publishing = true
            $0.redisShards = urls
            $0.redisStreamLength = 1_000
        }
        defer { publisher.stop() }
        let a = channels(on: 0, of: 2, 1, tag: "a")[0]
        let b = channels(on: 1, of: 2, 1, tag: "b")[0]
        let stream = try EventStreamClient(port: stalled.port, path: "/events?channel=\(a)&channel=\(b)")
        #expect(stream.status == 200)
        try publisher.publish("a0", to: a)
        #expect(try stream.next()?.data == "a0")

        stalled.signal(SIGSTOP)
        var resumed = false
        defer { if !resumed { stalled.signal(SIGCONT) } }
        let total = 5_000
        for i in 1...total {
            try publisher.publish("a\(i)", to: a)
            if i % 500 == 0 { try publisher.publish("b\(i / 500)", to: b) }
        }
        stalled.signal(SIGCONT)
        resumed = true

        var events: [ParsedEvent] = []
        var sawLastA = false
        var sawLastB = false
        while !(sawLastA && sawLastB), let e = try stream.next(timeout: 10) {
            events.append(e)
            sawLastA = sawLastA || e.data == "a\(total)"
            sawLastB = sawLastB || e.data == "b10"
        }
        let gaps = events.filter { $0.type == "microsse.gap" }
        try #require(gaps.count == 1, "one gap signal")
        #expect(gaps[0].data.contains(#""reason":"evicted""#))
        #expect(gaps[0].data.contains(".1."), "the gap names the stream's place on both shards: \(gaps[0].data)")
        #expect(
            events.filter { $0.data.hasPrefix("b") }.map(\.data) == (1...10).map { "b\($0)" }, "shard 1: every event")
        let ofA = events.filter { $0.data.hasPrefix("a") }.map { Int($0.data.dropFirst())! }
        #expect(ofA == ofA.sorted() && ofA.count < total, "shard 0: in order, some lost (and told)")
        stalled.signal(SIGTERM)
        _ = stalled.waitForExit()
    }
}
