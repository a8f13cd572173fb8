import MicroSSE
import MicroSSECore
import MicroSSERedis
import MicroSSETestSupport
import Testing

/// Redis's `used_memory` in bytes.
private func usedMemory(_ port: UInt16) throws -> Int {
    let info = try #require(ask(port, ["INFO", "memory"])?.text)
    let line = try #require(info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("used_memory:") })
    return try #require(Int(line.dropFirst("used_memory:".count)))
}

extension SeveralHubsTests {
    @Suite("The history memory budget in Redis")
    struct MemoryBudget {
        @Test("historyMemoryBytes bounds Redis at publish time: big events to new channels, one copy each, oldest go")
        func budgetHoldsAtPublishTime() throws {
            let redis = try RedisServer()
            let prefix = uniquePrefix("budget")
            let budget = 4 << 20
            let hub = try makeServer {
                $0.publishing = true
                $0.historyMemoryBytes = budget
                $0.redis = try? RedisURL(redis.url)
                $0.redisKeyPrefix = prefix
            }
            defer { hub.stop() }
            let chunk = String(repeating: "x", count: 256 << 10)
            // A stream on the last channel: its big event reaches it whole through the one copy.
            let last = try EventStreamClient(port: hub.port, path: "/events/c39")
            let before = try usedMemory(redis.port)
            var ids: [String] = []
            var highest = 0
            for i in 0..<40 {
                ids.append(try hub.publish("\(i) \(chunk)", to: "c\(i)"))
                // The bound holds after each publish, not after a later pass.
                let counted = ask(redis.port, ["GET", "\(prefix):bytes"])?.text.flatMap { Int($0) } ?? .max
                #expect(counted <= budget, "after publish \(i): \(counted) bytes counted")
                highest = max(highest, try usedMemory(redis.port) - before)
            }
            // 10 MiB published (20 MiB in Redis with a second copy of each): the budget, plus
            // Redis's own buffers for the requests and replies under way (a few events).
            #expect(highest <= budget + (3 << 20), "Redis grew by \(highest) bytes for a \(budget) budget")
            print("figures: Redis used_memory grew by at most \(highest) bytes for 40 × 256 KiB, budget \(budget)")
            #expect(try last.next()?.data == "39 \(chunk)")
            // The oldest channel's event went: a resume from before it is told.
            let resumed = try EventStreamClient(
                port: hub.port, path: "/events/c0", headers: [("Last-Event-ID", ids[0])])
            #expect(resumed.head.header("MicroSSE-Gap") == nil)  // its own event: nothing after it was lost
            let early = try EventStreamClient(
                port: hub.port, path: "/events/c1",
                headers: [("Last-Event-ID", ids[0])])
            #expect(early.head.header("MicroSSE-Gap") == "evicted")
            // The newest is retained and replayed.
            let recent = try EventStreamClient(
                port: hub.port, path: "/events/c39", headers: [("Last-Event-ID", ids[38])])
            #expect(recent.head.header("MicroSSE-Gap") == nil)
            #expect(try recent.next()?.data == "39 \(chunk)")
            // /metrics says what Redis holds.
            let stored = try #require(try metric(hub, "microsse_redis_history_bytes"))
            #expect(stored > 0 && stored <= Double(budget))
        }
    }
}
