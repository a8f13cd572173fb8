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

/// Events published by one thread, numbered in publish order, until stopped.
private final class NumberedPublisher: Sendable {
    /// The acknowledged ids, index = the number in the event's data (`n<index>`).
    let ids = Mutex<[String]>([])
    private let running = Atomic<Bool>(true)
    private let finished = Atomic<Bool>(false)

    /// Publishes `n0`, `n1`, … to `channels` in turn on `server` until ``stop()``.
    init(_ server: Server, channels: [String]) {
        let thread = Thread { [self] in
            var i = 0
            while running.load(ordering: .relaxed) {
                guard let id = try? server.publish("n\(i)", to: channels[i % channels.count]) else { break }
                ids.withLock { $0.append(id) }
                i += 1
            }
            finished.store(true, ordering: .releasing)
        }
        thread.start()
    }

    var count: Int { ids.withLock { $0.count } }

    func stop() {
        running.store(false, ordering: .relaxed)
        _ = eventually(timeout: 10) { finished.load(ordering: .acquiring) }
    }
}

extension SeveralHubsTests {
    @Suite("The seam between replay and live events")
    struct ResumeSeam {
        @Test("resumes of a two-channel stream while both channels are published to: every event once, in order")
        func twoChannelResumeUnderLoad() throws {
            let redis = try RedisServer()
            let hub = try makeHub(redis, prefix: uniquePrefix("seam"))
            defer { hub.stop() }
            let publisher = NumberedPublisher(hub, channels: ["a", "b"])
            defer { publisher.stop() }
            try #require(eventually { publisher.count > 50 })
            // Each resume starts 20 events back, so the replay and the live events that arrive
            // while it is fetched meet at a different point every time.
            for round in 0..<40 {
                let from = publisher.count - 20
                let lastID = publisher.ids.withLock { $0[from] }
                let stream = try EventStreamClient(
                    port: hub.port, path: "/events?channel=a&channel=b", headers: [("Last-Event-ID", lastID)])
                #expect(stream.head.header("MicroSSE-Gap") == nil)
                let got = try stream.events(60).map(\.data)
                let expected = (from + 1..<from + 61).map { "n\($0)" }
                #expect(got == expected, "round \(round): resumed after n\(from)")
                if got != expected { break }
            }
        }
    }
}

extension SeveralHubsTests {
    @Suite("A Redis resume bigger than the stream's bound")
    struct ResumeBound {
        @Test("a replay larger than the client buffer arrives whole, read as the stream drains, and the stream lives")
        func oversizedReplayArrivesWhole() throws {
            let redis = try RedisServer()
            let url = try RedisURL(redis.url)
            let hub = try makeServer {
                $0.publishing = true
                $0.redis = url
                $0.redisKeyPrefix = uniquePrefix("bound")
                $0.clientBufferBytes = 4_096
            }
            defer { hub.stop() }
            let payload = String(repeating: "x", count: 200)
            let ids = try (0..<60).map { try hub.publish("\($0) \(payload)", to: "big") }
            // About 12 KB of history after the first id: three times what the stream may hold.
            let stream = try EventStreamClient(
                port: hub.port, path: "/events/big", headers: [("Last-Event-ID", ids[0])])
            #expect(stream.status == 200)
            #expect(stream.head.header("MicroSSE-Gap") == nil)
            let replayed = try stream.events(59).map(\.id)
            #expect(replayed == Array(ids.dropFirst()), "every retained event, in order")
            let live = try hub.publish("live", to: "big")
            #expect(try stream.next()?.id == live, "the stream was not failed by its replay")
        }
    }
}

@Suite("Live events held during a Redis resume")
struct PendingLiveEventsTests {
    @Test("held up to the stream's bound; past it all are dropped and the resume reports the gap")
    func boundedByTheStreamsLimit() throws {
        var pending = RedisBroker.Pending(limit: 100)
        let frame = Frame(bytes: [UInt8](repeating: 0x61, count: 40), isEvent: true)
        pending.hold(try #require(RedisStreamID("1-0")), frame)
        pending.hold(try #require(RedisStreamID("2-0")), frame)
        #expect(pending.buffered.count == 2 && !pending.overflowed)
        pending.hold(try #require(RedisStreamID("3-0")), frame)
        #expect(pending.overflowed && pending.buffered.isEmpty, "120 bytes held for a 100-byte bound")
        pending.hold(try #require(RedisStreamID("4-0")), frame)
        #expect(pending.buffered.isEmpty)
    }
}
