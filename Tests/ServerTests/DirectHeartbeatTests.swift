import MicroSSE
import MicroSSETestSupport
import MicroSSETransport
import Synchronization
import Testing

/// Heartbeats on idle streams are written to the suspended connection's socket as whole chunks,
/// without resuming it; streams that are not plain HTTP/1.1 chunks get them through the content
/// reader as before.
@Suite("Heartbeats written while suspended")
struct DirectHeartbeatTests {
    @Test(
        "an idle HTTP/1.1 stream gets well-framed heartbeats without a resume, outlives the connection timeout, then streams"
    )
    func idleStreamHeartbeats() throws {
        let server = try makeServer {
            $0.heartbeatSeconds = 1
            $0.connectionTimeoutSeconds = 2
        }
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/idle")
        #expect(stream.status == 200)
        // Four heartbeats: four seconds suspended, twice the connection timeout.
        #expect(try stream.waitForComments(4, timeout: 10))
        // Counted just after each send returns: the client may have read the last one already.
        // This server's own count: no test running alongside can add to it.
        func direct() -> Int { server.transport?.heartbeatsWrittenDirectly.load(ordering: .relaxed) ?? -1 }
        #expect(eventually(timeout: 2) { direct() >= 3 }, "heartbeats written directly: \(direct())")
        try server.publish("after the heartbeats", to: "idle")
        #expect(try stream.next()?.data == "after the heartbeats")
        #expect(!stream.brokenOff)
        try server.publish("and again", to: "idle")
        #expect(try stream.next()?.data == "and again")
    }

    @Test("an HTTP/1.0 stream (no chunks) gets its heartbeats through the content reader, unframed")
    func http10StreamHeartbeats() throws {
        let server = try makeServer { $0.heartbeatSeconds = 1 }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        defer { c.close() }
        try c.send("GET /events/old HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
        #expect(try c.readHead().status == 200)
        var body: [UInt8] = []
        let deadline = now() + 10
        while now() < deadline, String(decoding: body, as: UTF8.self).components(separatedBy: ":\n\n").count < 3 {
            body += try c.readAvailable(deadline: deadline)
        }
        #expect(String(decoding: body, as: UTF8.self).hasPrefix(":\n\n:\n\n"), "two bare heartbeats, no chunk sizes")
        try server.publish("one", to: "old")
        var more: [UInt8] = []
        #expect(
            eventually(timeout: 5) {
                more += (try? c.readAvailable(deadline: now() + 0.1)) ?? []
                return String(decoding: more, as: UTF8.self).contains("data: one\n\n")
            })
        #expect(!String(decoding: more, as: UTF8.self).contains("\r\n"), "no chunk framing on HTTP/1.0")
    }
}
