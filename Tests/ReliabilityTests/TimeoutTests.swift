import MicroSSE
import MicroSSETestSupport
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// ServerConfiguration.connectionTimeoutSeconds: idle and stalled requests are closed, streams
/// are not (docs/LIMITS.md; docs/DESIGN.md: dead suspended peers).
@Suite("Connection timeouts: requests time out, streams do not")
struct TimeoutTests {
    @Test("a connection that sends nothing is closed after the connection timeout")
    func idleConnectionClosed() throws {
        let server = try makeServer { $0.connectionTimeoutSeconds = 1 }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        let start = now()
        #expect(try c.waitForClose(timeout: 5))
        #expect(now() - start < 4)
    }

    @Test("an idle keep-alive connection is closed after its request was answered")
    func idleKeepAliveClosed() throws {
        let server = try makeServer { $0.connectionTimeoutSeconds = 1 }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        try c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try c.readHead().status == 200)
        #expect(try c.waitForClose(timeout: 5))
    }

    @Test("a request whose headers stop half way is closed after the connection timeout")
    func stalledHeadersClosed() throws {
        let server = try makeServer { $0.connectionTimeoutSeconds = 1 }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        try c.send("GET /events/x HTTP/1.1\r\nHost: x\r\nAccept: text/ev")
        #expect(try c.waitForClose(timeout: 5))
        #expect(server.statistics.clients == 0)
    }

    @Test("a body that stops half way is closed after the connection timeout, nothing published")
    func stalledBodyClosed() throws {
        let server = try makeServer {
            $0.connectionTimeoutSeconds = 1
            $0.publishing = true
        }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        try c.send("POST /events/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        #expect(try c.waitForClose(timeout: 5))
        #expect(server.statistics.published == 0)
    }

    @Test("slowloris: headers trickled a byte at a time are cut off, not held open for ever")
    func slowlorisCutOff() throws {
        // Each byte arrives well within the inactivity timeout; only a limit on the request as a
        // whole (time, or the connection's memory pool) can end it.
        let server = try makeServer {
            $0.connectionTimeoutSeconds = 1
            $0.connectionMemoryLimit = 4096
        }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        try c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")
        let start = now()
        var closed = false
        var sent = 0
        while now() - start < 8 && !closed {
            do {
                try c.send("X-\(sent): y\r\n")
                sent += 1
            } catch {
                closed = true
                break
            }
            closed = try c.waitForClose(timeout: 0.2)
        }
        // libmicrohttpd's own timeout counts idle time only (each byte restarts it): the
        // transport's request deadline (msse_shim_tracker) is what ends this. docs/RELIABILITY.md
        // finding 3.
        #expect(closed, "a trickled request was still open after \(now() - start) s and \(sent) header lines")
        #expect(now() - start < 4)
    }

    @Test("a publish body trickled a byte at a time is cut off, nothing published")
    func slowBodyCutOff() throws {
        let server = try makeServer {
            $0.connectionTimeoutSeconds = 1
            $0.publishing = true
        }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        try c.send("POST /events/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        let start = now()
        var closed = false
        while now() - start < 8 && !closed {
            do { try c.send("a") } catch { break }
            closed = try c.waitForClose(timeout: 0.2)
        }
        #expect(closed || now() - start < 8, "a trickled body was still open after \(now() - start) s")
        #expect(server.statistics.published == 0)
    }

    @Test("the second request on a keep-alive connection gets its own deadline")
    func keepAliveSecondRequestDeadline() throws {
        let server = try makeServer { $0.connectionTimeoutSeconds = 1 }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        // Quick requests, each well inside the deadline, more than the deadline in total.
        for _ in 0..<3 {
            try c.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try c.readHead().status == 200)
            #expect(!(try c.waitForClose(timeout: 0.5)), "keep-alive connection closed between requests")
        }
        // Then one trickled: cut off.
        try c.send("HEAD /healthz HTTP/1.1\r\n")
        let start = now()
        var closed = false
        while now() - start < 6 && !closed {
            do { try c.send("X: y\r\n") } catch { break }
            closed = try c.waitForClose(timeout: 0.2)
        }
        #expect(closed || now() - start < 6)
    }

    @Test("an open stream outlives the connection timeout and still receives events")
    func streamOutlivesTimeout() throws {
        let server = try makeServer { $0.connectionTimeoutSeconds = 1 }
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/slow")
        try #require(eventually { server.statistics.clients == 1 })
        // Idle (suspended) for well over the timeout.
        #expect(try stream.next(timeout: 2.5) == nil)
        try server.publish("after idle", to: "slow")
        #expect(try stream.next()?.data == "after idle")
        // Resumed, written, suspended again, idle again for over the timeout.
        #expect(try stream.next(timeout: 2.5) == nil)
        try server.publish("after second idle", to: "slow")
        #expect(try stream.next()?.data == "after second idle")
        #expect(server.statistics.clients == 1)
        #expect(!stream.brokenOff)
    }

    @Test("a stream that is written often outlives the connection timeout")
    func busyStreamOutlivesTimeout() throws {
        let server = try makeServer { $0.connectionTimeoutSeconds = 1 }
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/busy")
        try #require(eventually { server.statistics.clients == 1 })
        let start = now()
        var i = 0
        while now() - start < 2.5 {
            try server.publish("tick \(i)", to: "busy")
            #expect(try stream.next()?.data == "tick \(i)")
            i += 1
            _ = try stream.next(timeout: 0.3)
        }
        #expect(server.statistics.clients == 1)
        #expect(!stream.brokenOff)
    }

    @Test("a private stream route outlives the connection timeout")
    func privateStreamOutlivesTimeout() throws {
        let server = try makeServer { $0.connectionTimeoutSeconds = 1 }
        defer { server.stop() }
        let clients = ClientBox()
        try server.addStreamRoute("/talk") { _, client in clients.set(client) }
        let stream = try EventStreamClient(port: server.port, path: "/talk")
        let client = try #require(eventually { clients.get() != nil } ? clients.get() : nil)
        #expect(try stream.next(timeout: 2.5) == nil)
        #expect(try client.send(Event(data: "still here")))
        #expect(try stream.next()?.data == "still here")
    }
}

/// Holds the client a stream route hands out.
final class ClientBox: Sendable {
    private let value = Mutex<Client?>(nil)
    func set(_ c: Client) { value.withLock { $0 = c } }
    func get() -> Client? { value.withLock { $0 } }
}
