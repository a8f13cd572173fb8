import MicroSSE
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `microsse serve --write-timeout 3` against a subscriber that stops reading: the stream is
/// dropped once the peer has read nothing for the timeout, never before (the figure, timeout +
/// 0.25 to 0.5 s, is measured in docs/RELIABILITY.md; whole-second ticks made it up to 2 s late).
@Suite("Write timeout: the real binary drops a stalled reader after the timeout")
struct WriteTimeoutBinaryTests {
    @Test("a reader that stops reading is dropped by --write-timeout 3, not before 3 s")
    func stalledReaderDropped() throws {
        let hub = try ServerProcess([
            "serve", "--host", "127.0.0.1", "--port", "0", "--write-timeout", "3", "--heartbeat", "0",
            "--client-buffer-bytes", "\(64 << 20)",
        ])
        let reader = try RawConnection(port: hub.port)
        reader.setReceiveBuffer(4_096)
        try reader.send("GET /events/slow HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        #expect(try reader.readHead().status == 200)
        #expect(eventually { (try? drops(hub.port, "clients")) == 1 })
        // Far more than the socket buffers of both ends hold, far less than the client's bound:
        // the peer never reads again, so the stall starts after the first of these.
        let payload = String(repeating: "z", count: 1 << 20)
        let start = now()
        for _ in 0..<16 {
            #expect(try postEvent(port: hub.port, channel: "slow", data: payload).status == 202)
        }
        #expect(eventually(timeout: 20) { (try? drops(hub.port, "drops")) == 1 }, "never dropped")
        let elapsed = now() - start
        #expect(elapsed >= 3, "dropped \(elapsed) s after the first publish: before the write timeout")
        print("write timeout 3 s: dropped \(elapsed) s after the first publish")
        hub.signal(SIGTERM)
        #expect(hub.waitForExit(timeout: 10) == 0)
    }
}

/// A counter from the hub's `GET /stats`.
private func drops(_ port: UInt16, _ name: String) throws -> Int? {
    let body = try httpRequest(port: port, path: "/stats").text
    guard let range = body.range(of: "\"\(name)\":") else { return nil }
    return Int(body[range.upperBound...].prefix { $0.isNumber })
}
