import Foundation
import MicroSSE
import MicroSSECore
import MicroSSERedis
import MicroSSETestSupport
import Synchronization
import Testing

@testable import MicroSSERedis

#if canImport(Glibc)
    import Glibc
#endif

/// Seconds `body` took.
private func timed(_ body: () throws -> Void) rethrows -> Double {
    let started = now()
    try body()
    return now() - started
}

/// Seconds as milliseconds with one decimal.
private func ms(_ seconds: Double) -> String { String(format: "%.1f", seconds * 1000) }

/// Holds every command `redis` receives for `seconds` (`CLIENT PAUSE … ALL`, which Redis
/// answers once the pause is in effect: nothing to wait for). Returns the earliest instant the
/// pause can end (it began after the command was sent).
func stall(_ redis: RedisServer, seconds: Double) throws -> Double {
    let c = try RedisConnection(host: "127.0.0.1", port: Int(redis.port), timeoutMilliseconds: 5_000)
    let sent = now()
    let reply = try c.command(["CLIENT", "PAUSE", String(Int(seconds * 1_000)), "ALL"])
    try #require(reply.text == "OK", "CLIENT PAUSE: \(reply)")
    return sent + seconds
}

/// The hub's Redis broker, every one of whose `count` workers is then running a publish held by a
/// stalled Redis (each taken before the next is queued), so the hub's next jobs wait in its queue
/// where the test can count them.
func busyWorkers(_ hub: Server, count: Int) throws -> RedisBroker {
    let broker = try #require(hub.broker as? RedisBroker)
    let channel = try ChannelName("busy")
    for i in 0..<count {
        broker.publishReceipt(try Event(data: "busy \(i)"), to: channel) { _ in }
        try #require(eventually { broker.workers.waiting == 0 }, "no worker took busy publish \(i)")
    }
    return broker
}

extension SeveralHubsTests {
    @Suite("Redis off libmicrohttpd's thread")
    struct OffThread {
        @Test("with Redis stalled, /healthz and live events on open streams answer within 100 ms")
        func stalledRedisDoesNotStallThePollingThread() throws {
            let redis = try RedisServer()
            let hub = try makeHub(redis, prefix: uniquePrefix("stall"))
            defer { hub.stop() }
            let opened = Mutex<Client?>(nil)
            try hub.addStreamRoute("/private") { _, client in opened.withLock { $0 = client } }
            let stream = try EventStreamClient(port: hub.port, path: "/private")
            let client = try #require(opened.withLock { $0 })
            let first = try hub.publish("first", to: "feed")
            var answer = 0
            let healthyBefore = try timed { () throws in
                answer = try httpRequest(port: hub.port, path: "/healthz").status
            }
            #expect(answer == 200)

            _ = try stall(redis, seconds: 0.6)
            // Both workers (the default) held by Redis: the publish and the resume below wait
            // in the queue, where they can be counted.
            let broker = try busyWorkers(hub, count: 2)
            let publishStatus = Mutex<Int>(0)
            let resumeStatus = Mutex<Int>(0)
            let publisher = Thread {
                let r = try? postEvent(port: hub.port, channel: "feed", data: "during")
                publishStatus.withLock { $0 = r?.status ?? -1 }
            }
            let resumer = Thread {
                let r = try? EventStreamClient(
                    port: hub.port, path: "/events/feed", headers: [("Last-Event-ID", first)])
                resumeStatus.withLock { $0 = r?.status ?? -1 }
            }
            publisher.start()
            resumer.start()
            #expect(eventually { broker.workers.waiting == 2 }, "the publish and the resume are waiting on Redis")
            #expect(publishStatus.withLock { $0 } == 0 && resumeStatus.withLock { $0 } == 0)

            let healthz = try timed { () throws in answer = try httpRequest(port: hub.port, path: "/healthz").status }
            #expect(answer == 200)
            let event = try Event(data: "live")
            var received: String?
            let live = try timed { () throws in
                _ = try client.send(event)
                received = try stream.next(timeout: 2)?.data
            }
            #expect(received == "live")
            print(
                "figures: /healthz \(ms(healthyBefore)) ms before the stall, \(ms(healthz)) ms during;"
                    + " a live event \(ms(live)) ms during")
            #expect(healthz < 0.1)
            #expect(live < 0.1)

            #expect(eventually(timeout: 5) { publishStatus.withLock { $0 } != 0 && resumeStatus.withLock { $0 } != 0 })
            #expect(publishStatus.withLock { $0 } == 202)
            #expect(resumeStatus.withLock { $0 } == 200)
        }

        @Test("a resume completed off-thread replays from Redis, then carries on live, exactly once")
        func deferredResumeIsExact() throws {
            let redis = try RedisServer()
            let hub = try makeHub(redis, prefix: uniquePrefix("exact"))
            defer { hub.stop() }
            let first = try hub.publish("e0", to: "feed")
            for i in 1..<5 { try hub.publish("e\(i)", to: "feed") }
            let resumed = try EventStreamClient(
                port: hub.port, path: "/events/feed", headers: [("Last-Event-ID", first)])
            #expect(resumed.status == 200)
            #expect(resumed.head.header("MicroSSE-Gap") == nil)
            for i in 5..<10 { try hub.publish("e\(i)", to: "feed") }
            #expect(try resumed.events(9).map(\.data) == (1..<10).map { "e\($0)" })
        }

        @Test("stop() with publishes waiting on a stalled Redis answers them 503 and returns")
        func stopWithPendingPublishes() throws {
            let redis = try RedisServer()
            let hub = try makeHub(redis, prefix: uniquePrefix("stop"))
            _ = try stall(redis, seconds: 1.5)
            let broker = try busyWorkers(hub, count: 2)
            let statuses = Mutex<[Int]>([])
            let retryAfter = Mutex<[String]>([])
            let publishers = (0..<3).map { i in
                Thread {
                    let r = try? postEvent(port: hub.port, channel: "feed", data: "p\(i)")
                    statuses.withLock { $0.append(r?.status ?? -1) }
                    retryAfter.withLock { $0.append(r?.header("Retry-After") ?? "") }
                }
            }
            publishers.forEach { $0.start() }
            #expect(eventually { broker.workers.waiting == 3 }, "the publishes are waiting on Redis")
            #expect(statuses.withLock { $0 }.isEmpty)
            let stopping = timed { hub.stop() }
            print("figures: stop() with 3 publishes pending took \(ms(stopping)) ms")
            #expect(eventually(timeout: 3) { statuses.withLock { $0 }.count == 3 })
            #expect(statuses.withLock { $0 } == [503, 503, 503])
            #expect(retryAfter.withLock { $0 } == ["1", "1", "1"])
            #expect(stopping < 1.0)
        }

        @Test("a publish that finds the work queue full is refused at once, without waiting on Redis")
        func fullQueueRefuses() throws {
            let redis = try RedisServer()
            let url = try RedisURL(redis.url)
            var settings = RedisBroker.Settings(url: url, prefix: uniquePrefix("full"), historyCount: 10)
            settings.workerCount = 1
            settings.workQueueCapacity = 1
            let broker = RedisBroker(settings: settings)
            try broker.start()
            defer { broker.shutdown() }
            _ = try stall(redis, seconds: 0.5)
            let results = Mutex<[Result<String, MicroSSEError>]>([])
            let channel = try ChannelName("feed")
            for i in 0..<3 {
                broker.publish(try Event(data: "e\(i)"), to: channel) { r in results.withLock { $0.append(r) } }
                // The worker has taken the first: the second waits, the third does not fit.
                if i == 0 { #expect(eventually { broker.workers.waiting == 0 }) }
            }
            let refused = results.withLock { $0 }
            #expect(refused.count == 1)
            if case .failure(let e) = refused.first {
                #expect(e.code == .unavailable)
            } else {
                Issue.record("not refused")
            }
            #expect(eventually(timeout: 3) { results.withLock { $0 }.count == 3 })
            #expect(results.withLock { $0 }.dropFirst().allSatisfy { if case .success = $0 { true } else { false } })
        }
    }
}
