import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Testing

/// The data of event `i` of a test: its number, padded so a replay is many writes long.
private func payload(_ i: Int, size: Int = 200) -> String { "e\(i)-" + String(repeating: "x", count: size) }

/// The number in an event's data (nil for another event).
private func number(_ data: String) -> Int? {
    guard data.hasPrefix("e"), let dash = data.firstIndex(of: "-") else { return nil }
    return Int(data[data.index(after: data.startIndex)..<dash])
}

extension SeveralHubsTests {
    /// A resume on Redis reads its replay a page at a time as the stream drains (docs/DESIGN.md,
    /// "Replay through cursors").
    @Suite("Redis replay in pages")
    struct PagedReplay {
        @Test("a replay larger than the stream's byte bound arrives whole, exact, to a slow reader")
        func replayLargerThanTheStreamBound() throws {
            let redis = try RedisServer()
            let hub = try makeServer {
                $0.publishing = true
                $0.historyCount = 2_000
                $0.clientBufferBytes = 32 << 10
                $0.redis = try? RedisURL(redis.url)
                $0.redisKeyPrefix = uniquePrefix("paged")
            }
            defer { hub.stop() }
            let ids = try (0..<1_500).map { try hub.publish(payload($0), to: "c") }
            // 1,499 events of about 230 bytes: ten times the stream's bound.
            let stream = try EventStreamClient(
                port: hub.port, path: "/events/c", headers: [("Last-Event-ID", ids[0])], receiveBuffer: 4_096)
            #expect(stream.head.header("MicroSSE-Gap") == nil)
            let events = try stream.events(1_499, timeout: 60)
            #expect(events.map(\.data) == (1..<1_500).map { payload($0) })
            #expect(events.last?.lastEventID == ids.last)
            // Live events follow the replay.
            let next = try hub.publish(payload(1_500), to: "c")
            #expect(try stream.next(timeout: 10)?.lastEventID == next)
        }

        @Test("a stream of several channels resumes exact, in publish order, past its byte bound")
        func severalChannelsInOrder() throws {
            let redis = try RedisServer()
            let hub = try makeServer {
                $0.publishing = true
                $0.historyCount = 1_000
                $0.clientBufferBytes = 32 << 10
                $0.redis = try? RedisURL(redis.url)
                $0.redisKeyPrefix = uniquePrefix("paged-multi")
            }
            defer { hub.stop() }
            let channels = ["a", "b", "c"]
            // Unevenly interleaved, so pages end at different places in each channel.
            var ids: [String] = []
            for i in 0..<1_200 { ids.append(try hub.publish(payload(i), to: channels[(i * i) % 3])) }
            let stream = try EventStreamClient(
                port: hub.port, path: "/events?channel=a&channel=b&channel=c", headers: [("Last-Event-ID", ids[0])],
                receiveBuffer: 4_096)
            #expect(stream.head.header("MicroSSE-Gap") == nil)
            let events = try stream.events(1_199, timeout: 60)
            #expect(events.map(\.data) == (1..<1_200).map { payload($0) })
        }

        @Test("a channel trimmed during a paged replay: the evicted gap where events went, then what is retained")
        func trimmedDuringReplay() throws {
            let redis = try RedisServer()
            let hub = try makeServer {
                $0.publishing = true
                $0.historyCount = 1_000
                $0.historyBytes = 64 << 20
                $0.clientBufferBytes = 64 << 20
                $0.redis = try? RedisURL(redis.url)
                $0.redisKeyPrefix = uniquePrefix("paged-trim")
            }
            defer { hub.stop() }
            // 8 MB of replay: more than the sockets' buffers hold, so the replay is still being
            // read when the channel is trimmed.
            let ids = try (0..<1_000).map { try hub.publish(payload($0, size: 8_000), to: "c") }
            let stream = try EventStreamClient(
                port: hub.port, path: "/events/c", headers: [("Last-Event-ID", ids[0])], receiveBuffer: 4_096)
            #expect(stream.head.header("MicroSSE-Gap") == nil)
            var events = try stream.events(10, timeout: 30)
            // 1,500 more: the channel keeps about its newest 1,000, every event the replay was
            // to send next is gone.
            let later = try (1_000..<2_500).map { try hub.publish(payload($0, size: 8_000), to: "c") }
            while events.last?.lastEventID != later.last, let event = try stream.next(timeout: 30) {
                events.append(event)
            }
            let gaps = events.indices.filter { events[$0].type == "microsse.gap" }
            try #require(gaps.count == 1, "gap events at \(gaps)")
            let before = events[..<gaps[0]].compactMap { number($0.data) }
            let after = events[(gaps[0] + 1)...].compactMap { number($0.data) }
            // Exact before the gap, which names the last event sent, and exact after it.
            #expect(before == Array(1...before.count))
            #expect(before.count < 999)
            #expect(events[gaps[0]].data.contains(#""reason":"evicted""#))
            #expect(events[gaps[0]].data.contains(ids[before.count]))
            #expect(after.first.map { $0 > before.count + 1 } == true)
            #expect(after == Array((after.first ?? 0)..<2_500))
        }
    }
}
