import MicroSSE
import MicroSSETestSupport
import Synchronization
import Testing

@Suite("Streaming over libmicrohttpd")
struct StreamingTests {
    @Test("stream responses carry the SSE headers")
    func streamHeaders() throws {
        let server = try makeServer()
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/news")
        #expect(stream.status == 200)
        #expect(stream.head.header("Content-Type") == "text/event-stream; charset=utf-8")
        #expect(stream.head.header("Cache-Control") == "no-cache")
        #expect(stream.head.header("X-Accel-Buffering") == "no")
        #expect(stream.head.header("Content-Length") == nil)
        #expect(stream.head.header("Content-Encoding") == nil)
    }

    @Test("HTTP/1.1 clients get a chunked body")
    func chunkedForHTTP11() throws {
        let server = try makeServer()
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/news")
        #expect(stream.head.header("Transfer-Encoding") == "chunked")
        try #require(eventually { server.statistics.clients == 1 })
        try server.publish("one", to: "news")
        let event = try #require(try stream.next())
        #expect(event.data == "one")
    }

    @Test("HTTP/1.0 clients get a close-delimited body that ends cleanly on stop")
    func closeDelimitedForHTTP10() throws {
        let server = try makeServer()
        let stream = try EventStreamClient(port: server.port, path: "/events/news", http10: true)
        #expect(stream.head.header("Transfer-Encoding") == nil)
        #expect(stream.head.header("Content-Length") == nil)
        try #require(eventually { server.statistics.clients == 1 })
        try server.publish("a\nb", to: "news")
        let event = try #require(try stream.next())
        #expect(event.data == "a\nb")
        server.stop()
        #expect(try stream.waitForEnd())
        // The opening comment, then the event, bytes as written (no chunk framing).
        #expect(String(decoding: stream.body, as: UTF8.self).hasPrefix(":\n\nid: "))
    }

    @Test("every subscriber gets every event, complete and in publish order")
    func manySubscribersInOrder() throws {
        let server = try makeServer()
        defer { server.stop() }
        let streams = try (0..<50).map { _ in try EventStreamClient(port: server.port, path: "/events/feed") }
        try #require(eventually { server.statistics.clients == 50 })
        var ids: [String] = []
        for i in 0..<200 {
            ids.append(try server.publish("event \(i)\nline two", to: "feed"))
        }
        for stream in streams {
            let events = try stream.events(200)
            #expect(events.map(\.data) == (0..<200).map { "event \($0)\nline two" })
            #expect(events.map(\.lastEventID) == ids)
        }
        #expect(eventually { server.statistics.delivered == 50 * 200 })
    }

    @Test("an event larger than the reader's buffer arrives whole")
    func largeEvent() throws {
        let server = try makeServer()
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/big")
        try #require(eventually { server.statistics.clients == 1 })
        let payload = String(repeating: "0123456789abcdef", count: 64 * 1024)  // 1 MiB
        try server.publish(payload, to: "big")
        try server.publish("after", to: "big")
        let events = try stream.events(2)
        #expect(events[0].data == payload)
        #expect(events[1].data == "after")
    }

    @Test("a payload cannot forge fields or end an event early")
    func noFieldInjection() throws {
        let server = try makeServer()
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/x")
        try #require(eventually { server.statistics.clients == 1 })
        let hostile = "ok\n\nid: 999\nevent: admin\rdata: forged\r\n\r\nretry: 1"
        try server.publish(hostile, to: "x")
        let events = try stream.events(1)
        #expect(events[0].type == "message")
        #expect(events[0].data == "ok\n\nid: 999\nevent: admin\ndata: forged\n\nretry: 1")
        #expect(stream.parser.retry == nil)
    }

    @Test("heartbeat comments arrive on an idle stream")
    func heartbeatOnIdleStream() throws {
        let server = try makeServer { $0.heartbeatSeconds = 1 }
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/quiet")
        #expect(try stream.waitForComments(3, timeout: 5))  // the opening comment, then two heartbeats
        #expect(stream.pending.isEmpty)
    }

    @Test("retry is sent once at stream start when configured")
    func retryAtStart() throws {
        let server = try makeServer { $0.retryMilliseconds = 2500 }
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/r")
        try #require(eventually { server.statistics.clients == 1 })
        try server.publish("x", to: "r")
        _ = try stream.events(1)
        #expect(stream.parser.retry == 2500)
        #expect(String(decoding: stream.body, as: UTF8.self).hasPrefix("retry: 2500\n\n:\n\n"))
    }

    @Test("stopping with hundreds of suspended streams ends every stream cleanly")
    func stopWithSuspendedStreams() throws {
        let server = try makeServer()
        let streams = try (0..<300).map { i in
            try EventStreamClient(port: server.port, path: "/events/c\(i % 3)")
        }
        try #require(eventually(timeout: 10) { server.statistics.clients == 300 })
        try server.publish("last", to: "c0")
        let started = now()
        server.stop()
        let elapsed = now() - started
        for (i, stream) in streams.enumerated() {
            #expect(try stream.waitForEnd(), "stream \(i) did not end with the final chunk")
            if i % 3 == 0 { #expect(stream.pending.map(\.data) == ["last"]) }
        }
        // Not a timing assertion on performance: a stop that hangs would exceed the drain bound.
        #expect(elapsed < Double(server.configuration.shutdownDrainMilliseconds) / 1000 + 2)
        #expect(server.statistics.clients == 0)
        #expect(throws: MicroSSEError.self) { try server.publish("late", to: "c0") }
    }

    @Test("the port is released after stop")
    func portReleased() throws {
        let server = try makeServer()
        let port = server.port
        server.stop()
        var config = ServerConfiguration()
        config.port = port
        let again = Server(configuration: config)
        try again.start()
        again.stop()
    }

    @Test("starting twice throws, and a taken port throws startFailed")
    func startErrors() throws {
        let server = try makeServer()
        defer { server.stop() }
        #expect(throws: MicroSSEError.self) { try server.start() }
        var config = ServerConfiguration()
        config.port = server.port
        let clash = Server(configuration: config)
        do {
            try clash.start()
            Issue.record("second bind on the same port succeeded")
        } catch {
            #expect(error.code == .startFailed)
        }
    }
}
