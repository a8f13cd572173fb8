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

extension SeveralHubsTests {
    @Suite("Redis workers and their queue")
    struct WorkerSettings {
        @Test("workers= and queue= parse, and values out of range are refused with the reason")
        func urlOptions() throws {
            let plain = try RedisURL("redis://h")
            #expect(plain.workers == 2 && plain.queueLimit == 1_024)
            let set = try RedisURL("redis-sentinel://h/m?workers=8&queue=5000&wait=all")
            #expect(set.workers == 8 && set.queueLimit == 5_000 && set.waitForEveryReplica)
            for (bad, reason) in [
                ("redis://h?workers=0", "workers must be 1-64"), ("redis://h?workers=65", "workers must be 1-64"),
                ("redis://h?workers=two", "workers must be 1-64"), ("redis://h?queue=0", "queue must be 1-1000000"),
                ("redis://h?queue=1000001", "queue must be 1-1000000"), ("redis://h?queue", "queue must be 1-1000000"),
            ] {
                #expect("\(bad)") {
                    _ = try RedisURL(bad)
                } throws: { error in
                    (error as? MicroSSEError).map { $0.code == .invalidArgument && $0.message.contains(reason) }
                        ?? false
                }
            }
        }

        @Test("a RedisURL whose workers or queueLimit was set out of range: start() throws invalidArgument")
        func fieldsOutOfRange() throws {
            let redis = try RedisServer()
            for (workers, queue, reason) in [(0, 1_024, "workers must be 1-64"), (2, 0, "queue limit must be")] {
                var url = try RedisURL(redis.url)
                url.workers = workers
                url.queueLimit = queue
                #expect("workers \(workers), queue \(queue)") {
                    _ = try makeServer {
                        $0.redis = url
                        $0.redisKeyPrefix = uniquePrefix("range")
                    }
                } throws: { error in
                    (error as? MicroSSEError).map { $0.code == .invalidArgument && $0.message.contains(reason) }
                        ?? false
                }
            }
        }

        @Test("serve --redis with workers=0: a clear error and a non-zero exit code")
        func serveRefusesBadWorkers() throws {
            let (status, message) = try runToExit(["serve", "--port", "0", "--redis", "redis://127.0.0.1:1?workers=0"])
            #expect(status != 0)
            #expect(message.contains("Redis URL option workers must be 1-64"), "\(message)")
        }

        @Test("workers=3&queue=1 with Redis stalled: three publishes run, one waits, the rest get 503 at once")
        func settingsTakeEffect() throws {
            let redis = try RedisServer()
            let hub = try makeServer {
                $0.publishing = true
                $0.redis = try? RedisURL(redis.url + "?workers=3&queue=1")
                $0.redisKeyPrefix = uniquePrefix("workers")
            }
            defer { hub.stop() }
            let ended = try stall(redis, seconds: 0.8)
            // Three publishes run (each taken by a worker before the next is queued: three
            // workers), then one over HTTP waits in the queue (room for one).
            let broker = try busyWorkers(hub, count: 3)
            let queued = Mutex<Int?>(nil)
            Thread {
                let r = try? postEvent(port: hub.port, channel: "w", data: "queued")
                queued.withLock { $0 = r?.status ?? -1 }
            }.start()
            #expect(eventually { broker.workers.waiting == 1 }, "the fourth publish is not waiting")
            // The next two are refused at once, while Redis sleeps.
            for i in 0..<2 {
                let r = try postEvent(port: hub.port, channel: "w", data: "p\(i)")
                let at = now()
                #expect(r.status == 503 && r.text.contains("1 publishes are already waiting for Redis"), "\(r.text)")
                #expect(at < ended, "refused only after Redis woke")
            }
            // The one waiting is stored once Redis wakes.
            #expect(eventually(timeout: 5) { queued.withLock { $0 } != nil })
            #expect(queued.withLock { $0 } == 202)
        }

        @Test("resumes are never refused for a full queue, and a publish runs before the resumes waiting")
        func resumesWaitPublishesFirst() throws {
            let redis = try RedisServer()
            var settings = RedisBroker.Settings(
                url: try RedisURL(redis.url), prefix: uniquePrefix("order"), historyCount: 10)
            settings.workerCount = 1
            settings.workQueueCapacity = 1
            let broker = RedisBroker(settings: settings)
            try broker.start()
            defer { broker.shutdown() }
            let channel = try ChannelName("feed")
            let first = try broker.publish(try Event(data: "e0"), to: channel)
            _ = try stall(redis, seconds: 0.5)
            let done = Mutex<[String]>([])
            // Six resumes with room for one job: one runs (waiting on Redis), five wait.
            for i in 0..<6 {
                broker.subscribe(Subscriber(channels: [channel], limit: 1 << 16), after: first) { status in
                    done.withLock { $0.append("resume \(i) \(status == .exact ? "exact" : "gap")") }
                }
                // The worker has taken the first (queueing is synchronous, so the rest wait).
                if i == 0 { #expect(eventually { broker.workers.waiting == 0 }) }
            }
            #expect(done.withLock { $0 }.isEmpty, "a resume was refused or started live")
            broker.publish(try Event(data: "e1"), to: channel) { result in
                done.withLock { $0.append((try? result.get()) != nil ? "publish" : "publish refused") }
            }
            #expect(eventually(timeout: 5) { done.withLock { $0 }.count == 7 })
            // The resume running when Redis stalled, then the publish, then the other five.
            #expect(done.withLock { $0 } == ["resume 0 exact", "publish"] + (1..<6).map { "resume \($0) exact" })
        }
    }
}
