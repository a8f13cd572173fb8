import MicroSSE
import MicroSSETestSupport
import MicroSSETransport
import Synchronization
import Testing

/// A stream's response holds its header lines only until its head is built: libmicrohttpd reads
/// them for the head alone, and an idle stream would otherwise keep their copies for its life.
@Suite("Stream heads")
struct StreamHeadTests {
    @Test("every header line of a stream's head arrives, the lines are freed after it, and the stream goes on whole")
    func headerLinesFreedAfterTheHead() throws {
        let origin = "https://app.example"
        let server = try makeServer { $0.corsOrigins = [origin] }
        defer { server.stop() }
        let count = 4
        let streams = try (0..<count).map { _ in
            try EventStreamClient(port: server.port, path: "/events/heads", headers: [("Origin", origin)])
        }
        let expected = [
            ("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"), ("Vary", "Origin"), ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
        ]
        for stream in streams {
            #expect(stream.status == 200)
            for (name, value) in expected { #expect(stream.head.header(name) == value, "\(name)") }
            #expect(stream.head.header("Access-Control-Expose-Headers")?.contains("Retry-After") == true)
        }
        // Seven lines each: three of every stream, four of CORS (this server's streams alone).
        func freed() -> Int { server.transport?.streamHeaderLinesFreed.load(ordering: .relaxed) ?? -1 }
        #expect(eventually { freed() == 7 * count }, "header lines freed: \(freed())")
        let data = "line one\nline two: \(String(repeating: "x", count: 3_000))"
        try server.publish(data, id: "e1", to: "heads")
        for stream in streams {
            let event = try stream.next()
            #expect(event?.data == data)
            #expect(event?.id == "e1")
        }
    }

    @Test("an HTTP/1.0 stream (no chunks: the reader fills libmicrohttpd's block) keeps its head and body, lines freed")
    func http10HeadAndBody() throws {
        let server = try makeServer()
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/old", http10: true)
        #expect(stream.status == 200)
        #expect(stream.head.header("Content-Type") == "text/event-stream; charset=utf-8")
        #expect(stream.head.header("Cache-Control") == "no-cache")
        #expect(stream.head.header("X-Accel-Buffering") == "no")
        func freed() -> Int { server.transport?.streamHeaderLinesFreed.load(ordering: .relaxed) ?? -1 }
        #expect(eventually { freed() == 3 }, "header lines freed: \(freed())")
        try server.publish("after the head", to: "old")
        #expect(try stream.next()?.data == "after the head")
    }
}
