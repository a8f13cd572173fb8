import Foundation
import MicroSSE
import MicroSSECore
import MicroSSERedis
import MicroSSETestSupport
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A wall clock a test can move: the system's until ``set(_:)``.
private final class MovableClock: Sendable {
    private let fixed = Mutex<UInt64?>(nil)

    func set(_ milliseconds: UInt64) { fixed.withLock { $0 = milliseconds } }
    func read() -> UInt64 { fixed.withLock { $0 } ?? Clocks.wallMilliseconds() }
}

/// The milliseconds of a Redis hub id (its position in the global stream).
private func milliseconds(_ id: String) -> UInt64 { RedisStreamID(position: id)!.milliseconds }

/// The data of the events a resume from `lastEventID` gets at once, and its gap header.
private func resume(_ hub: Server, _ channel: String, after lastEventID: String, count: Int) throws -> (
    gap: String?, events: [ParsedEvent]
) {
    let stream = try EventStreamClient(
        port: hub.port, path: "/events/\(channel)", headers: [("Last-Event-ID", lastEventID)])
    return (stream.head.header("MicroSSE-Gap"), try stream.events(count))
}

extension SeveralHubsTests {
    @Suite("History TTL with Redis")
    struct HistoryTTL {
        @Test("events past the history TTL are not replayed; a resume from before one gets the evicted gap")
        func expiredEventsAreNotReplayed() throws {
            let redis = try RedisServer()
            let prefix = uniquePrefix("ttl")
            let clock = MovableClock()
            let hub = try makeServer {
                $0.publishing = true
                $0.redis = try? RedisURL(redis.url)
                $0.redisKeyPrefix = prefix
                $0.redisWallClock = { clock.read() }
                $0.historyTTLSeconds = 60  // after redis: it still applies
            }
            defer { hub.stop() }
            var ids = try (0..<3).map { try hub.publish("e\($0)", to: "c") }
            // e3 in a later millisecond than e2, so a cutoff can fall between them.
            try #require(eventually { Clocks.wallMilliseconds() > milliseconds(ids[2]) })
            ids += try (3..<5).map { try hub.publish("e\($0)", to: "c") }
            clock.set(milliseconds(ids[3]) + 60_000)  // e0-e2 are now past the TTL, e3 and e4 not

            // Nothing published since: the expired entries are still in Redis, filtered at replay.
            let key = "\(prefix):ch:c"
            #expect(ask(redis.port, ["XLEN", key])?.text == "5")
            let late = try resume(hub, "c", after: ids[1], count: 3)
            #expect(late.gap == "evicted")
            #expect(late.events[0].type == "microsse.gap")
            #expect(late.events[0].data == #"{"lastEventId":"\#(ids[1])","reason":"evicted"}"#)
            #expect(late.events.dropFirst().map(\.data) == ["e3", "e4"])
            // From the newest expired event nothing was missed.
            let atBoundary = try resume(hub, "c", after: ids[2], count: 2)
            #expect(atBoundary.gap == nil)
            #expect(atBoundary.events.map(\.data) == ["e3", "e4"])

            // The next publish trims them in Redis, keeping the newest expired one as the boundary.
            ids.append(try hub.publish("e5", to: "c"))
            let kept = ask(redis.port, ["XRANGE", key, "-", "+"])?.array?.compactMap { $0.array?.first?.text }
            #expect(kept == ids[2...].map { RedisStreamID(position: $0)!.description })
            // The byte counter follows: 4 entries of 2 data bytes plus 32, and the channel's
            // bookkeeping (100 bytes and twice its name).
            #expect(ask(redis.port, ["HGET", "\(prefix):sizes", "c"])?.text == "\(136 + 102)")
            let before = try resume(hub, "c", after: ids[0], count: 4)
            #expect(before.gap == "evicted")
            #expect(before.events.dropFirst().map(\.data) == ["e3", "e4", "e5"])
            let exact = try resume(hub, "c", after: ids[2], count: 3)
            #expect(exact.gap == nil)
            #expect(exact.events.map(\.data) == ["e3", "e4", "e5"])
            let recent = try resume(hub, "c", after: ids[3], count: 2)
            #expect(recent.gap == nil)
            #expect(recent.events.map(\.data) == ["e4", "e5"])
        }

        @Test("serve --history-ttl 1 --redis: a second later the event is not replayed, the resume gets the gap")
        func serveAppliesTheTTL() throws {
            let redis = try RedisServer()
            let hub = try ServerProcess([
                "serve", "--port", "0", "--heartbeat", "0", "--history-ttl", "1", "--redis", redis.url,
            ])
            let first = try #require(
                try publishRetrying(port: hub.port, channel: "news", data: "old 0", deadline: now() + 5))
            _ = try #require(try publishRetrying(port: hub.port, channel: "news", data: "old 1", deadline: now() + 5))
            // Poll (a resume every 100 ms) until "old 1" is past the TTL.
            var resumed: EventStreamClient?
            #expect(
                try eventually(timeout: 10) {
                    let s = try EventStreamClient(
                        port: hub.port, path: "/events/news", headers: [("Last-Event-ID", first)])
                    guard s.head.header("MicroSSE-Gap") == "evicted" else {
                        usleep(100_000)
                        return false
                    }
                    resumed = s
                    return true
                })
            let stream = try #require(resumed)
            #expect(try stream.next()?.type == "microsse.gap")
            _ = try #require(try publishRetrying(port: hub.port, channel: "news", data: "new", deadline: now() + 5))
            #expect(try stream.next()?.data == "new")  // not "old 1"
            hub.signal(SIGTERM)
            #expect(hub.waitForExit(timeout: 30) == 0)
        }
    }
}
