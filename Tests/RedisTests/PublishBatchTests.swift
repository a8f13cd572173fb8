import Dispatch
import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Synchronization
import Testing

extension SeveralHubsTests {
    @Suite("Publishes stored in batches")
    struct PublishBatch {
        @Test("40 server.publish calls waiting for Redis are stored in a few script calls, every one, in queue order")
        func waitingPublishesShareScriptCalls() throws {
            let redis = try RedisServer()
            let hub = try makeHub(redis, prefix: uniquePrefix("batch"))
            defer { hub.stop() }
            let stream = try EventStreamClient(port: hub.port, path: "/events/b")
            _ = try hub.publish("first", to: "b")  // the script is loaded; the workers are connected
            #expect(try stream.next()?.data == "first")
            let admin = try RedisConnection(url: try RedisURL(redis.url), timeoutMilliseconds: 5_000)
            _ = try admin.command(["CONFIG", "RESETSTAT"])
            // While Redis is paused, 40 threads publish through the Swift API: two wait in Redis
            // (one per worker), the other 38 in the queue.
            _ = try stall(redis, seconds: 0.5)  // under the 1 s command timeout
            let ids = Mutex<[String]>([])
            let failures = Mutex<[String]>([])
            let done = DispatchGroup()
            for i in 0..<40 {
                done.enter()
                let thread = Thread {
                    do {
                        let id = try hub.publish("e\(i)", to: "b")
                        ids.withLock { $0.append(id) }
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                    done.leave()
                }
                thread.start()
            }
            #expect(done.wait(timeout: .now() + 20) == .success)
            #expect(failures.withLock { $0 }.isEmpty)
            #expect(Set(ids.withLock { $0 }).count == 40)
            let stats = try admin.command(["INFO", "commandstats"]).text ?? ""
            let line = stats.split(whereSeparator: \.isNewline).first { $0.hasPrefix("cmdstat_evalsha:") } ?? ""
            let calls = Int(line.split(separator: ",").first?.split(separator: "=").last ?? "") ?? -1
            // One call per publish before batching; now the two in Redis, then the queue in one or two.
            #expect(calls >= 1 && calls <= 10, "\(calls) script calls for 40 publishes")
            print("figures: 40 publishes waiting for Redis stored with \(calls) script calls")
            // Every one delivered, in the order of their positions.
            let events = try stream.events(40)
            #expect(Set(events.map(\.data)) == Set((0..<40).map { "e\($0)" }))
            let positions = events.compactMap { $0.id.flatMap { RedisStreamID(position: $0) } }
            #expect(positions == positions.sorted() && positions.count == 40)
        }
    }
}
