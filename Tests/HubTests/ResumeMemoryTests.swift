import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

/// Replay through cursors: a slow resuming stream costs its cursor, not its replay (docs/DESIGN.md,
/// "Positions, labels and epochs"). The scenario (600 streams) is measured by
/// scripts/resume-memory.py; this is the same at a scale a test can afford.
@Suite("Resuming streams cost their cursor")
struct ResumeMemoryTests {
    @Test("200 slow streams resuming 32 channels of 1,000 events: hub memory per stream stays small, /stats answers")
    func slowResumingStreams() throws {
        // The shipped defaults (history 1,000, 8 MiB per stream, 32 channels per stream), but no
        // write timeout: these readers never read, and must stay open until measured.
        let hub = try makeHub { $0.writeTimeoutSeconds = 600 }
        defer { hub.stop() }
        let channels = (0..<32).map { "c\($0)" }
        var first: String?
        for i in 0..<1_000 {
            for c in channels {
                let id = try hub.publish("x", to: c)
                if first == nil { first = id }
            }
            _ = i
        }
        let request =
            "GET /events?" + channels.map { "channel=\($0)" }.joined(separator: "&")
            + " HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\nLast-Event-ID: \(first!)\r\n\r\n"
        // Warm up (the allocator's arenas, libmicrohttpd's pools), then measure what more streams cost.
        var warm: [RawConnection] = []
        for _ in 0..<20 {
            let c = try RawConnection(port: hub.port, receiveBuffer: 4_096)
            try c.send(request)
            warm.append(c)
        }
        try #require(waitForClients(hub, 20, timeout: 20))
        let before = liveResidentKiB()
        let streams = 200
        var slow: [RawConnection] = []
        for _ in 0..<streams {
            // A reader whose window fills at once and that never reads: its replay stays pending.
            let c = try RawConnection(port: hub.port, receiveBuffer: 4_096)
            try c.send(request)
            slow.append(c)
        }
        try #require(waitForClients(hub, 20 + streams, timeout: 30))
        // Every stream's replay under way (its first chunks written; the rest pending behind
        // sockets that take little). Copied replays were all queued by now.
        #expect(try eventually(timeout: 30) { try stats(hub)["delivered"] ?? 0 >= (20 + streams) * 500 })
        let after = liveResidentKiB()
        let perStream = max(0, after - before) * 1_024 / streams
        // Copied into each stream's queue, the replays cost 819 KB per stream here (the code
        // before cursors); a cursor costs one write's worth of queued frames at most (10-30 KB
        // measured, libmicrohttpd's write buffer included). The bound is loose: this process runs other
        // tests meanwhile, and their memory counts too.
        #expect(perStream < 400_000, "hub memory per resuming stream: \(perStream) bytes")
        // /stats answers while the replays run.
        let statsReply = try httpRequest(port: hub.port, path: "/stats")
        #expect(statsReply.status == 200)
        #expect(try stats(hub)["clients"] == 20 + streams)
        #expect(try stats(hub)["delivered"] ?? 0 < (20 + streams) * 32_000, "replays still running")
        _ = warm
    }
}
