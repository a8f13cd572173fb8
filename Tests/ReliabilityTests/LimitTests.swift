import MicroSSE
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Oversized requests are refused with 4xx; limits on connections hold.
@Suite("Request size limits and connection limits")
struct LimitTests {
    @Test("a request line larger than the connection's memory pool gets 414")
    func oversizedRequestLine() throws {
        let server = try makeServer { $0.connectionMemoryLimit = 8192 }
        defer { server.stop() }
        let path = "/events/" + String(repeating: "a", count: 20_000)
        let status = try rawStatus(port: server.port, "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(status == 414)
        #expect(try httpRequest(port: server.port, path: "/healthz").status == 200)
    }

    @Test("headers larger than the connection's memory pool get 431")
    func oversizedHeaders() throws {
        let server = try makeServer { $0.connectionMemoryLimit = 8192 }
        defer { server.stop() }
        var request = "GET /events/x HTTP/1.1\r\nHost: x\r\n"
        for i in 0..<400 { request += "X-Filler-\(i): \(String(repeating: "v", count: 40))\r\n" }
        request += "\r\n"
        let status = try rawStatus(port: server.port, request)
        #expect(status == 431)
        // One single huge header, too.
        let one = "GET /events/x HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 20_000))\r\n\r\n"
        #expect(try rawStatus(port: server.port, one) == 431)
        #expect(server.statistics.clients == 0)
    }

    @Test("a publish body over maxPublishBytes announced by Content-Length gets 413 before it is read")
    func oversizedBodyAnnounced() throws {
        let server = try makeServer {
            $0.publishing = true
            $0.maxPublishBytes = 1000
        }
        defer { server.stop() }
        let (status, c) = try rawRequest(
            port: server.port, Array("POST /events/x HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n".utf8))
        defer { c.close() }
        #expect(status == 413)
        #expect(server.statistics.published == 0)
        // Exactly at the limit is fine.
        let ok = try httpRequest(
            port: server.port, method: "POST", path: "/events/x", body: Array(repeating: 0x61, count: 1000))
        #expect(ok.status == 202)
        let over = try httpRequest(
            port: server.port, method: "POST", path: "/events/x", body: Array(repeating: 0x61, count: 1001))
        #expect(over.status == 413)
        #expect(server.statistics.published == 1)
    }

    @Test("a chunked publish body that grows over maxPublishBytes gets 413, nothing published")
    func oversizedBodyChunked() throws {
        let server = try makeServer {
            $0.publishing = true
            $0.maxPublishBytes = 1000
        }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        defer { c.close() }
        try c.send("POST /events/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        let chunk = "100\r\n" + String(repeating: "z", count: 256) + "\r\n"
        for _ in 0..<6 { try c.send(chunk) }  // 1,536 bytes
        try c.send("0\r\n\r\n")
        let head = try c.readHead()
        #expect(head.status == 413)
        #expect(server.statistics.published == 0)
        #expect(try httpRequest(port: server.port, path: "/healthz").status == 200)
    }

    @Test("an endless chunked body is cut off instead of being read for ever")
    func endlessBodyChunked() throws {
        let server = try makeServer {
            $0.publishing = true
            $0.maxPublishBytes = 1000
        }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        defer { c.close() }
        try c.send("POST /events/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        let chunk = "100\r\n" + String(repeating: "z", count: 256) + "\r\n"
        var refused = false
        for _ in 0..<4_000 {  // 1 MiB, a thousand times the limit
            do { try c.send(chunk) } catch {
                refused = true
                break
            }
        }
        if !refused { refused = try c.waitForClose(timeout: 5) }
        #expect(refused)
        #expect(server.statistics.published == 0)
    }

    @Test("a body sent without announcing its length is bounded too")
    func bodyUntilClose() throws {
        let server = try makeServer {
            $0.publishing = true
            $0.maxPublishBytes = 1000
        }
        defer { server.stop() }
        // HTTP/1.0 with no Content-Length: MHD takes the request as having no body.
        let (status, c) = try rawRequest(
            port: server.port,
            Array(("POST /events/x HTTP/1.0\r\n\r\n" + String(repeating: "q", count: 5000)).utf8))
        defer { c.close() }
        #expect(status.map { (200..<500).contains($0) } ?? true)
        #expect(eventually(timeout: 1) { server.statistics.published <= 1 })
    }

    @Test("the per-IP connection limit refuses the connection over it and admits the next after one closes")
    func perIPLimit() throws {
        let server = try makeServer { $0.perIPConnectionLimit = 3 }
        defer { server.stop() }
        let streams = try (0..<3).map { _ in try EventStreamClient(port: server.port, path: "/events/ip") }
        try #require(eventually { server.statistics.clients == 3 })
        // The fourth gets 429 with the reason (and is closed); past twice the limit (three streams
        // and three more held open), a connection is closed at accept.
        let fourth = try RawConnection(port: server.port)
        try fourth.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try fourth.readHead(timeout: 2).status == 429)
        let held = try (0..<3).map { _ in try RawConnection(port: server.port) }
        let seventh = try RawConnection(port: server.port)
        try? seventh.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect((try? seventh.readHead(timeout: 2)) == nil, "past twice the limit: closed without an answer")
        for c in held + [fourth, seventh] { c.close() }
        // The streams were not disturbed.
        try server.publish("still", to: "ip")
        for s in streams { #expect(try s.next()?.data == "still") }
        streams[0].close()
        // A closed peer is noticed on a write (docs/DESIGN.md: dead suspended peers).
        #expect(
            eventually {
                _ = try? server.publish("notice the close", to: "ip")
                return server.statistics.clients == 2
            })
        #expect(eventually { (try? httpRequest(port: server.port, path: "/healthz", timeout: 1).status) == 200 })
    }

    @Test("streams over maxClients get 503 with Retry-After, and the others keep streaming")
    func maxClients() throws {
        let server = try makeServer { $0.maxClients = 2 }
        defer { server.stop() }
        let a = try EventStreamClient(port: server.port, path: "/events/m")
        let b = try EventStreamClient(port: server.port, path: "/events/m")
        try #require(eventually { server.statistics.clients == 2 })
        let r = try httpRequest(port: server.port, path: "/events/m", headers: [("Accept", "text/event-stream")])
        #expect(r.status == 503)
        #expect(r.header("Retry-After") != nil)
        try server.publish("ok", to: "m")
        #expect(try a.next()?.data == "ok")
        #expect(try b.next()?.data == "ok")
    }

    @Test("HEAD on a stream route answers the head and leaves no stream open")
    func headOnStream() throws {
        let server = try makeServer()
        defer { server.stop() }
        for _ in 0..<50 {
            let r = try httpRequest(port: server.port, method: "HEAD", path: "/events/h")
            #expect(r.status == 200)
        }
        #expect(eventually { server.statistics.clients == 0 })
        #expect(try httpRequest(port: server.port, path: "/healthz").status == 200)
    }

    @Test("HTTP/1.0 and garbage request lines get 4xx and leave nothing open")
    func garbageRequests() throws {
        let server = try makeServer()
        defer { server.stop() }
        for raw in [
            "\u{0}\u{1}\u{2}\r\n\r\n", "GET\r\n\r\n", "GET /events/x\r\n\r\n", "GET /events/x HTTP/9.9\r\n\r\n",
            // (An HTTP/1.1 request without Host is accepted by libmicrohttpd 0.9.75's default
            // strictness; docs/RELIABILITY.md notes it. It is not a way around anything.)
            "GET /events/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "GET /events/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "POST /events/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nabcde",
        ] {
            let status = try rawStatus(port: server.port, raw, timeout: 3)
            #expect(status.map { (400..<600).contains($0) } ?? true, "\(raw.debugDescription) gave \(status ?? 0)")
        }
        #expect(eventually { server.statistics.clients == 0 })
        #expect(server.statistics.published == 0)
        #expect(try httpRequest(port: server.port, path: "/healthz").status == 200)
    }

    @Test(
        "the per-address table counts 24 addresses apart, through closes and reopens (a small table, so entries collide)"
    )
    func perAddressTableUnderChurn() throws {
        // Connection limit 32: the shim's table has 64 slots, so 24 addresses share probe chains.
        let server = try makeServer {
            $0.perIPConnectionLimit = 1
            $0.connectionLimit = 32
        }
        defer { server.stop() }
        let addresses = (0..<24).map { "127.0.0.\(10 + $0)" }
        func status(from address: String) throws -> (Int, RawConnection) {
            let c = try RawConnection(port: server.port, from: address)
            try c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return (try c.readHead().status, c)
        }
        var held: [RawConnection?] = []
        for address in addresses {
            let (code, c) = try status(from: address)
            #expect(code == 200, "first connection from \(address)")
            held.append(c)  // keep-alive: the connection stays open and counted
        }
        for address in addresses {
            let (code, c) = try status(from: address)
            #expect(code == 429, "second connection from \(address)")
            c.close()
        }
        for i in stride(from: 0, to: held.count, by: 2) {
            held[i]?.close()
            held[i] = nil
        }
        for (i, address) in addresses.enumerated() {
            if i % 2 == 0 {
                // Its first connection is closed: admitted again once the hub has seen the close.
                #expect(
                    eventually(timeout: 5) {
                        guard let (code, c) = try? status(from: address) else { return false }
                        c.close()
                        return code == 200
                    }, "\(address) after its connection closed")
            } else {
                let (code, c) = try status(from: address)
                #expect(code == 429, "\(address) still holds its connection")
                c.close()
            }
        }
        for c in held { c?.close() }
    }
}
