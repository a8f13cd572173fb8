import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension SeveralHubsTests {
    @Suite("A reader that knows when it lost its place")
    struct ReaderPlace {
        @Test("a hub stalled (SIGSTOP) past the trim tells its open stream: the gap signal, then what is retained")
        func stalledPastTheTrim() throws {
            let redis = try RedisServer()
            // The subscriber's hub: `microsse serve`, so it can be stopped; the publishing hub in
            // this process keeps the global stream short (about 1,000 entries), so the test is fast.
            let stalled = try ServerProcess(["serve", "--port", "0", "--heartbeat", "0", "--redis", redis.url])
            let url = try RedisURL(redis.url)
            let publisher = try makeServer {
                $0.publishing = true
                $0.redis = url
                $0.redisStreamLength = 1_000
            }
            defer { publisher.stop() }
            let stream = try EventStreamClient(port: stalled.port, path: "/events/s")
            #expect(stream.status == 200)
            try publisher.publish("e0", to: "s")
            #expect(try stream.next()?.data == "e0")

            stalled.signal(SIGSTOP)
            var resumed = false
            defer { if !resumed { stalled.signal(SIGCONT) } }
            let total = 5_000
            for i in 1...total { try publisher.publish("e\(i)", to: "s") }
            guard case .integer(let kept) = ask(redis.port, ["XLEN", "microsse:all"]) else {
                Issue.record("XLEN failed")
                return
            }
            #expect(kept > 0 && kept < total, "the global stream was trimmed: \(kept) entries kept")
            stalled.signal(SIGCONT)
            resumed = true

            var events: [ParsedEvent] = []
            while let e = try stream.next(timeout: 10) {
                events.append(e)
                if e.data == "e\(total)" { break }
            }
            let gaps = events.indices.filter { events[$0].type == "microsse.gap" }
            try #require(gaps.count == 1, "one gap signal: \(events.prefix(3).map(\.data))")
            let gap = events[gaps[0]]
            #expect(gap.data.contains(#""reason":"evicted""#))
            // Before the gap: what the hub had read before it stopped, in order from e1; after it:
            // what is retained, in order, up to the last event.
            let before = events[..<gaps[0]].map { Int($0.data.dropFirst())! }
            let after = events[(gaps[0] + 1)...].map { Int($0.data.dropFirst())! }
            #expect(before == Array(1..<(1 + before.count)))
            #expect(!after.isEmpty && after == Array((total + 1 - after.count)...total))
            #expect(after.count <= kept, "no more than what Redis kept")
            #expect(before.count + after.count < total, "events were lost, and the stream was told")
            let metrics = try httpRequest(port: stalled.port, path: "/metrics").text
            #expect(metrics.contains("microsse_redis_reader_gaps_total 1"), "\(metrics.prefix(200))")
            #expect(metrics.contains("microsse_redis_reader_lag_seconds"))
            stalled.signal(SIGTERM)
            _ = stalled.waitForExit()
        }
    }
}
