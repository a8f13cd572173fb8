import Foundation
import MicroSSE
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
