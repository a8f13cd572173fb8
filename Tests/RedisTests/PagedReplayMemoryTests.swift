import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Testing

/// glibc's `malloc_trim` (in `<malloc.h>`, which the Glibc module does not import).
@_silgen_name("malloc_trim") private func mallocTrim(_ pad: Int) -> Int32

extension SeveralHubsTests {
    @Suite("Slow resuming streams on Redis cost a page")
    struct PagedReplayMemory {
        @Test("100 slow streams resuming 32 channels of 500 events from Redis: hub memory per stream stays small")
        func slowResumingStreams() throws {
            let redis = try RedisServer()
            // The shipped defaults (8 MiB per stream), but no write timeout: these readers never
            // read, and must stay open until measured.
            let hub = try makeServer {
                $0.publishing = true
                $0.writeTimeoutSeconds = 600
                $0.redis = try? RedisURL(redis.url)
                $0.redisKeyPrefix = uniquePrefix("paged-memory")
            }
            defer { hub.stop() }
            let channels = (0..<32).map { "c\($0)" }
            var first: String?
            for _ in 0..<500 {
                for c in channels {
                    let id = try hub.publish("x", to: c)
                    if first == nil { first = id }
                }
            }
            let request =
                "GET /events?" + channels.map { "channel=\($0)" }.joined(separator: "&")
                + " HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\nLast-Event-ID: \(first!)\r\n\r\n"
            // Warm up (the allocator's arenas, libmicrohttpd's pools), then measure what more cost.
            var warm: [RawConnection] = []
            for _ in 0..<10 {
                let c = try RawConnection(port: hub.port, receiveBuffer: 4_096)
                try c.send(request)
                warm.append(c)
            }
            try #require(eventually(timeout: 20) { hub.statistics.clients == 10 })
            _ = mallocTrim(0)
            let before = residentKiB()
            let streams = 100
            var slow: [RawConnection] = []
            for _ in 0..<streams {
                // A reader whose window fills at once and that never reads: its replay stays pending.
                let c = try RawConnection(port: hub.port, receiveBuffer: 4_096)
                try c.send(request)
                slow.append(c)
            }
            try #require(eventually(timeout: 30) { hub.statistics.clients == 10 + streams })
            // Every stream's replay under way (its first pages written, the rest pending behind
            // sockets that take little). Copied replays were all queued by now.
            #expect(eventually(timeout: 30) { hub.statistics.delivered >= (10 + streams) * 300 })
            _ = mallocTrim(0)
            let perStream = max(0, residentKiB() - before) * 1_024 / streams
            // Copied into each stream's queue (the code before pages), a replay of 16,000 events
            // costs about 1 MB per stream; a page about 25 KB. The bound is loose: this process
            // runs other tests meanwhile, and their memory counts too.
            #expect(perStream < 100_000, "hub memory per resuming stream: \(perStream) bytes")
            #expect(hub.statistics.delivered < (10 + streams) * 16_000, "replays still running")
            _ = warm
        }

        @Test("20 slow streams resuming replays of 16 MB from Redis: each costs a page, not its replay")
        func slowResumingStreamsOfBigReplays() throws {
            let redis = try RedisServer()
            let hub = try makeServer {
                $0.publishing = true
                $0.writeTimeoutSeconds = 600
                $0.redis = try? RedisURL(redis.url)
                $0.redisKeyPrefix = uniquePrefix("paged-memory-big")
            }
            defer { hub.stop() }
            let channels = (0..<32).map { "c\($0)" }
            let data = String(repeating: "x", count: 1_000)
            var first: String?
            for _ in 0..<500 {
                for c in channels {
                    let id = try hub.publish(data, to: c)
                    if first == nil { first = id }
                }
            }
            let request =
                "GET /events?" + channels.map { "channel=\($0)" }.joined(separator: "&")
                + " HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\nLast-Event-ID: \(first!)\r\n\r\n"
            var warm: [RawConnection] = []
            for _ in 0..<4 {
                let c = try RawConnection(port: hub.port, receiveBuffer: 4_096)
                try c.send(request)
                warm.append(c)
            }
            try #require(eventually(timeout: 20) { hub.statistics.clients == 4 })
            _ = mallocTrim(0)
            let before = residentKiB()
            let streams = 20
            var slow: [RawConnection] = []
            for _ in 0..<streams {
                let c = try RawConnection(port: hub.port, receiveBuffer: 4_096)
                try c.send(request)
                slow.append(c)
            }
            try #require(eventually(timeout: 30) { hub.statistics.clients == 4 + streams })
            #expect(eventually(timeout: 30) { hub.statistics.delivered >= (4 + streams) * 300 })
            _ = mallocTrim(0)
            let perStream = max(0, residentKiB() - before) * 1_024 / streams
            // Each replay is 16 MB: queued whole (the code before pages) it was cut to the
            // stream's 8 MiB bound, of which the kernel's socket buffers take a few; a page of
            // 256 events is about 280 KB, and a write's worth is queued.
            #expect(perStream < 1_500_000, "hub memory per resuming stream: \(perStream) bytes")
            #expect(hub.statistics.delivered < (4 + streams) * 16_000, "replays still running")
            _ = warm
        }
    }
}
