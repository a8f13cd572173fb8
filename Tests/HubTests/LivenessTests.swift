import Foundation
import MicroSSE
import MicroSSETestSupport
import Synchronization
import Testing

/// Slow and stuck subscribers, liveness. Serialized: the memory test reads this process's
/// resident size, which a neighbour pushing megabytes at the same time would blur.
@Suite("Hub liveness: slow, stalled and dead subscribers", .serialized)
struct LivenessTests {
    @Test(
        "a subscriber that never reads while 20 MiB are published is dropped, memory stays bounded, another gets everything"
    )
    func stuckSubscriberIsDropped() throws {
        // The real binary in a process of its own, so its resident memory is the hub's alone
        // (this test process runs many servers and clients at once).
        let hub = try ServerProcess([
            "serve", "--port", "0", "--heartbeat", "0", "--client-buffer-bytes", String(1 << 20),
            "--history-bytes", String(1 << 20), "--max-publish-bytes", String(256 << 10),
        ])
        defer {
            hub.signal(SIGTERM)
            _ = hub.waitForExit()
        }
        let port = hub.port
        // The stuck subscriber: asks for the stream and never reads a byte.
        let stuck = try RawConnection(port: port)
        try stuck.send("GET /events/big HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        // The reader: HTTP/1.0 (close-delimited) so bytes go straight into a parser and are dropped.
        let reader = try EventStreamClient(port: port, path: "/events/big", http10: true)
        #expect(eventually { ((try? hubStats(port))?["clients"] ?? 0) == 2 })

        let count = 160
        let size = 128 << 10  // 160 x 128 KiB = 20 MiB
        @Sendable func payload(_ i: Int) -> String {
            let head = "\(i):"
            return head + String(repeating: Character(UnicodeScalar(UInt8(97 + i % 26))), count: size - head.utf8.count)
        }
        let received = Atomic<Int>(0)
        let publisher = Worker {
            for i in 0..<count {
                // A backend publishing at a realistic pace: at most 8 events ahead of the reader.
                _ = eventually(timeout: 20) { received.load(ordering: .acquiring) >= i - 8 }
                // Retried until accepted: a timed-out answer may hide a stored event, which the
                // reader then sees twice and skips.
                for _ in 0..<5 {
                    if (try? postEvent(port: port, channel: "big", data: payload(i)))?.status == 202 { break }
                }
            }
        }
        defer { publisher.join() }

        let pid = hub.process.processIdentifier
        let baseline = residentKiB(of: pid)
        var peak = baseline
        var parser = EventStreamParser()
        var next = 0
        var outOfOrder = 0
        let deadline = now() + 40
        while next < count && now() < deadline {
            let bytes = try reader.connection.readAvailable(deadline: min(deadline, now() + 1))
            for e in parser.feed(bytes) {
                if next > 0 && e.data == payload(next - 1) { continue }  // a retried publish
                if e.data != payload(next) { outOfOrder += 1 }
                next += 1
                received.store(next, ordering: .releasing)
                if next % 16 == 0 { peak = max(peak, residentKiB(of: pid)) }
            }
            if bytes.isEmpty && reader.connection.isEOF { break }
        }
        #expect(next == count)
        #expect(outOfOrder == 0)
        let stats = try hubStats(port)
        #expect(stats["drops"] == 1)
        #expect(stats["clients"] == 1)
        // The stuck stream was cut off: it ends without the final chunk.
        #expect(try stuck.waitForClose(timeout: 10))
        // 20 MiB went through; the hub held at most history + one buffer + socket buffers.
        let growthMiB = Double(peak - baseline) / 1024
        #expect(growthMiB < 16, "the hub's resident memory grew by \(growthMiB) MiB")
    }

    @Test("a peer that stops reading is dropped by the write timeout; the others keep streaming")
    func stalledPeerIsDropped() throws {
        let hub = try makeHub {
            $0.heartbeatSeconds = 1
            $0.writeTimeoutSeconds = 1
            $0.clientBufferBytes = 64 << 20
        }
        defer { hub.stop() }
        let stuck = try RawConnection(port: hub.port)
        try stuck.send("GET /events/s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        let healthy = try subscribe(hub, "/events/s")
        #expect(waitForClients(hub, 2))
        // More than the socket buffers between the hub and the stuck peer hold, far less than
        // its buffer bound: only the write timeout can drop it.
        let big = String(repeating: "x", count: 256 << 10)
        for _ in 0..<40 { try hub.publish(big, to: "s") }
        #expect(try healthy.events(40, timeout: 20).count == 40)
        #expect(eventually(timeout: 15) { hub.statistics.drops == 1 })
        #expect(try stuck.waitForClose(timeout: 10))
        try hub.publish("after", to: "s")
        #expect(try healthy.next()?.data == "after")
    }

    @Test("heartbeats keep an idle stream alive and reap a peer that reset the connection")
    func heartbeatReapsResetPeer() throws {
        let hub = try makeHub { $0.heartbeatSeconds = 1 }
        defer { hub.stop() }
        let idle = try subscribe(hub, "/events/idle")
        let gone = try subscribe(hub, "/events/idle")
        #expect(waitForClients(hub, 2))
        gone.connection.reset()
        #expect(eventually(timeout: 10) { hub.statistics.clients == 1 })
        #expect(try idle.waitForComments(3, timeout: 10))  // the opening comment, then two heartbeats
        try hub.publish("still", to: "idle")
        #expect(try idle.next()?.data == "still")
    }
}
