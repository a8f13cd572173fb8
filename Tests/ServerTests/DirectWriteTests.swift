import MicroSSE
import MicroSSETestSupport
import MicroSSETransport
import MicroSSEWire
import Synchronization
import Testing

/// Events for a suspended HTTP/1.1 stream of one channel are written to its socket by the
/// transport's writer thread, without resuming the connection; whatever that path cannot take
/// goes through the content reader, and the stream stays byte-exact either way.
@Suite("Events written while suspended", .serialized)
struct DirectWriteTests {
    func direct() -> Int { HTTPTransport.eventsWrittenDirectly.load(ordering: .relaxed) }

    @Test("events to an idle stream go straight to its socket, in order with a client's own events")
    func idleStreamEvents() throws {
        let server = try makeServer()
        defer { server.stop() }
        let clients = Mutex<[Client]>([])
        server.onConnect { client in clients.withLock { $0.append(client) } }
        let stream = try EventStreamClient(port: server.port, path: "/events/direct")
        #expect(eventually { server.statistics.clients == 1 })
        let before = direct()
        var expected: [String] = []
        for i in 0..<50 {
            try server.publish("event \(i)", to: "direct")
            expected.append("event \(i)")
            if i % 10 == 9 {
                // A frame for this stream alone keeps its place after the channel's events.
                _ = try clients.withLock { $0 }.first?.send(Event(data: "private \(i)"))
                expected.append("private \(i)")
            }
            // One at a time, so each finds the stream suspended again.
            #expect(try stream.next()?.data == expected[expected.count - (i % 10 == 9 ? 2 : 1)])
            if i % 10 == 9 { #expect(try stream.next()?.data == expected.last) }
        }
        #expect(eventually(timeout: 2) { direct() - before >= 25 }, "written directly: \(direct() - before)")
        #expect(!stream.brokenOff)
    }

    @Test("a reader that stops reading fills its socket; then it reads every event, exactly once, framed right")
    func fullSocketThenCatchUp() throws {
        let server = try makeServer { $0.clientBufferBytes = 64 << 20 }
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/full", receiveBuffer: 4_096)
        #expect(eventually { server.statistics.clients == 1 })
        let payload = String(repeating: "x", count: 3_000)
        let count = 3_000
        // Each publish waits for its write: the socket fills while the client reads nothing,
        // and later chunks are cut short or go through the content reader.
        for i in 0..<count {
            try server.publish("\(i) \(payload)", to: "full")
        }
        var seen = 0
        let deadline = now() + 30
        while seen < count && now() < deadline {
            guard let event = try stream.next(timeout: max(0.1, deadline - now())) else { break }
            #expect(event.data == "\(seen) \(payload)")
            seen += 1
        }
        #expect(seen == count)
        #expect(!stream.brokenOff)
        // The stream goes on normally afterwards.
        try server.publish("after", to: "full")
        #expect(try stream.next()?.data == "after")
    }

    @Test("an HTTP/1.1 stream asked with Connection: close is still chunked, so direct chunks frame it right")
    func connectionCloseStillChunked() throws {
        let server = try makeServer()
        defer { server.stop() }
        let stream = try EventStreamClient(
            port: server.port, path: "/events/closing", headers: [("Connection", "close")])
        #expect(stream.head.header("Transfer-Encoding")?.lowercased() == "chunked")
        #expect(eventually { server.statistics.clients == 1 })
        let before = direct()
        for i in 0..<5 {
            try server.publish("close \(i)", to: "closing")
            #expect(try stream.next()?.data == "close \(i)")
        }
        #expect(eventually(timeout: 2) { direct() - before >= 3 })
    }

    @Test("an HTTP/1.0 stream is never written directly: its events come through the content reader")
    func http10NotDirect() throws {
        let server = try makeServer()
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/old", http10: true)
        #expect(eventually { server.statistics.clients == 1 })
        for i in 0..<5 {
            try server.publish("old \(i)", to: "old")
            #expect(try stream.next()?.data == "old \(i)")
        }
    }
}
