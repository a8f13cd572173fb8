import MicroSSE
import MicroSSETestSupport
import MicroSSETransport
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The transport's answers to hostile or broken clients, over raw sockets: TLS handshakes time
/// out, publishes are refused on their head, framing that could smuggle a request is refused,
/// requests too large for the connection's memory are answered, HEAD on a stream has no body.
@Suite("Transport hardening: handshakes, early refusals, framing, sizes, HEAD")
struct HardeningTransportTests {
    static let token = "s3cret-Token_0123456789"

    // MARK: TLS handshake deadline

    /// A self-signed certificate and key made with `openssl` in a fresh temporary directory.
    static func selfSignedTLS() throws -> ServerConfiguration.TLS {
        var template = Array("/tmp/microsse-tls-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template).map({ String(cString: $0) }) else {
            throw TestClientError("mkdtemp failed: errno \(errno)")
        }
        let command =
            "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 "
            + "-keyout \(dir)/key.pem -out \(dir)/cert.pem >/dev/null 2>&1"
        guard system(command) == 0 else { throw TestClientError("openssl could not make a certificate") }
        defer {
            unlink("\(dir)/key.pem")
            unlink("\(dir)/cert.pem")
            rmdir(dir)
        }
        return try ServerConfiguration.TLS(certificateFile: "\(dir)/cert.pem", privateKeyFile: "\(dir)/key.pem")
    }

    @Test("with TLS, a connection that never starts its handshake is closed at the connection timeout")
    func tlsHandshakeDeadline() throws {
        let tls = try Self.selfSignedTLS()
        let server = try makeServer {
            $0.tls = tls
            $0.connectionTimeoutSeconds = 2
        }
        defer { server.stop() }
        let silent = try RawConnection(port: server.port)
        let start = now()
        #expect(try silent.waitForClose(timeout: 8))
        let elapsed = now() - start
        #expect(elapsed >= 1.5 && elapsed < 4.5, "closed after \(elapsed) s")
        // A handshake stopped half way (a few bytes of a ClientHello) is cut at the same deadline.
        let partial = try RawConnection(port: server.port)
        try partial.send([0x16, 0x03, 0x01, 0x00, 0xF0, 0x01])
        let again = now()
        #expect(try partial.waitForClose(timeout: 8))
        #expect(now() - again < 4.5)
        // A handshake trickled a byte at a time (each well within libmicrohttpd's idle timeout).
        let trickle = try RawConnection(port: server.port)
        let begun = now()
        var closed = false
        for byte: UInt8 in [0x16, 0x03, 0x01, 0x02, 0x00] + [UInt8](repeating: 0x01, count: 40) where !closed {
            if (try? trickle.send([byte])) == nil { break }
            closed = try trickle.waitForClose(timeout: 0.3)
        }
        if !closed { closed = try trickle.waitForClose(timeout: 3) }
        #expect(closed)
        #expect(now() - begun < 4.5, "a trickled handshake lasted \(now() - begun) s")
    }

    // MARK: Publishes refused on their head

    @Test("20 concurrent 2 MiB publishes without the token get 401 before their bodies are sent")
    func unauthorizedPublishRefusedOnHead() throws {
        let server = try makeServer {
            $0.publishing = true
            $0.publishToken = Self.token
        }
        defer { server.stop() }
        let before = residentKiB()
        let size = 2 << 20
        let firstPiece = [UInt8](repeating: 0x61, count: 16 << 10)
        var connections: [RawConnection] = []
        for _ in 0..<20 {
            let c = try RawConnection(port: server.port)
            try c.send("POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length: \(size)\r\n\r\n")
            try? c.send(firstPiece)
            connections.append(c)
        }
        for c in connections {
            // The client has sent 16 KiB of its 2 MiB: the answer came on the head alone.
            let head = try c.readHead(timeout: 5)
            #expect(head.status == 401)
            #expect(head.header("WWW-Authenticate") == "Bearer")
            #expect(head.header("Connection")?.lowercased() == "close")
            #expect(try c.waitForClose(timeout: 5))
        }
        #expect(server.statistics.published == 0)
        if !runningUnderSanitizer {
            // Storing the bodies would take 40 MiB.
            #expect(residentKiB() - before < 12 << 10, "RSS grew from \(before) KiB to \(residentKiB()) KiB")
        }
    }

    @Test("Expect: 100-continue without the token gets 401 as its first status line, with it 100")
    func expectContinueWithoutToken() throws {
        let server = try makeServer {
            $0.publishing = true
            $0.publishToken = Self.token
        }
        defer { server.stop() }
        let refused = try RawConnection(port: server.port)
        try refused.send("POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        #expect(try refused.readHead().status == 401)
        let allowed = try RawConnection(port: server.port)
        try allowed.send(
            "POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
                + "Authorization: Bearer \(Self.token)\r\n\r\n")
        #expect(try allowed.readHead().status == 100)
        try allowed.send("hello")
        #expect(try allowed.readHead().status == 202)
        #expect(server.statistics.published == 1)
    }

    @Test("an invalid channel name in a publish is refused on the head with 400")
    func publishChannelCheckedOnHead() throws {
        let server = try makeServer { $0.publishing = true }
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        try c.send("POST /events/bad%20name HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        #expect(try c.readHead().status == 400)
    }

    @Test("uploads over the in-flight budget get 503 with Retry-After; the budget is given back")
    func uploadBudget() throws {
        let piece = 256 << 10
        let server = try makeServer {
            $0.publishing = true
            $0.maxPublishBytes = piece
            $0.maxUploadBytesInFlight = piece + piece / 2
        }
        defer { server.stop() }
        let port = server.port
        // One announced upload holds 256 KiB of the 384 KiB budget while its body trickles in.
        let holder = try RawConnection(port: port)
        try holder.send("POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length: \(piece)\r\n\r\n")
        try holder.send([UInt8](repeating: 0x61, count: 1024))
        // Its head reserved the announced length: wait until the transport holds it.
        #expect(eventually { (server.transport?.options.uploadBudget.inFlight ?? 0) >= piece })
        // A second announced one does not fit: refused on its head.
        let second = try RawConnection(port: port)
        try second.send("POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length: \(piece)\r\n\r\n")
        let refusal = try second.readHead()
        #expect(refusal.status == 503)
        #expect(refusal.header("Retry-After") != nil)
        // A chunked one is refused when its body crosses the budget (answered at its end).
        let chunked = try RawConnection(port: port)
        try chunked.send("POST /events/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        let chunk = [UInt8](repeating: 0x62, count: 64 << 10)
        for _ in 0..<3 { try chunked.send(Array("10000\r\n".utf8) + chunk + Array("\r\n".utf8)) }
        try chunked.send("0\r\n\r\n")
        #expect(try chunked.readHead().status == 503)
        // The holder finishes; its publish goes through and gives its bytes back.
        try holder.send([UInt8](repeating: 0x61, count: piece - 1024))
        #expect(try holder.readHead().status == 202)
        holder.close()
        let body = [UInt8](repeating: 0x63, count: piece)
        #expect(
            try eventually { try httpRequest(port: port, method: "POST", path: "/events/t", body: body).status == 202 })
    }

    // MARK: Framing (RFC 9112)

    static let smuggling: [(String, String)] = [
        (
            "Content-Length with Transfer-Encoding",
            "POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        (
            "two different Content-Lengths",
            "POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
        ),
        ("space before the colon", "POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc"),
        ("obs-fold", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
        ("obs-fold with a tab", "GET /healthz HTTP/1.1\r\nX-A: a\r\n\tb\r\nHost: x\r\n\r\n"),
        ("bare CR in a value", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
        ("NUL in a value", "GET /healthz HTTP/1.1\r\nX-A: a\u{0}b\r\nHost: x\r\n\r\n"),
        ("NUL in the last value", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n"),
        ("NUL NUL in the last value", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}\u{0}b\r\n\r\n"),
        ("NUL in a name", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-\u{0}A: b\r\n\r\n"),
        (
            "Transfer-Encoding: chunked, identity",
            "POST /events/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
        ),
        ("Transfer-Encoding: identity", "POST /events/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n"),
        (
            "two Transfer-Encodings",
            "POST /events/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        ("Content-Length not digits", "POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc"),
    ]

    @Test("request smuggling framing gets 400 with a reason and Connection: close, never silence")
    func smugglingRefused() throws {
        let server = try makeServer { $0.publishing = true }
        defer { server.stop() }
        for (name, request) in Self.smuggling {
            let c = try RawConnection(port: server.port)
            defer { c.close() }
            try c.send(request)
            let head = try #require(try? c.readHead(), "\(name): no status line")
            #expect(head.status == 400, "\(name): \(head.status)")
            #expect(head.header("Connection")?.lowercased() == "close", "\(name)")
            let body = String(decoding: try c.readAvailable(deadline: now() + 2), as: UTF8.self)
            #expect(body.hasPrefix("bad request: ") || head.header("Content-Length") != "0", "\(name): '\(body)'")
            #expect(try c.waitForClose(timeout: 3), "\(name): connection left open")
        }
        #expect(server.statistics.published == 0)
        // Well-formed requests are untouched: the same Content-Length twice, chunked, bare LF.
        for request in [
            "POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            "POST /events/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "POST /events/t HTTP/1.1\nHost: x\nX-Empty:\nContent-Length: 3\n\nabc",
        ] {
            #expect(try rawStatus(port: server.port, request) == 202, "\(request.debugDescription)")
        }
    }

    // MARK: Requests too large for the connection's pool

    @Test(
        "subscribes with many channels get a status line with a reason at 5 KiB and 32 KiB pools",
        arguments: [
            5 << 10, 32 << 10,
        ])
    func manyChannels(pool: Int) throws {
        let server = try makeServer { $0.connectionMemoryLimit = pool }
        defer { server.stop() }
        for count in [65, 150] {
            let query = (0..<count).map { "channel=c\($0)" }.joined(separator: "&")
            let c = try RawConnection(port: server.port)
            defer { c.close() }
            try c.send("GET /events?\(query) HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            let head = try #require(try? c.readHead(timeout: 5), "\(count) channels, pool \(pool): no status line")
            if pool == 5 << 10 {
                #expect([414, 431, 400].contains(head.status), "\(count) channels: \(head.status)")
            }
            if head.status >= 400 {
                let reason = String(decoding: try c.readAvailable(deadline: now() + 2), as: UTF8.self)
                #expect(!reason.isEmpty, "\(count) channels, pool \(pool): \(head.status) without a reason")
            } else {
                #expect(head.status == 200)
            }
        }
    }

    @Test("every request head up to the pool's size gets a status line", arguments: [5 << 10, 32 << 10])
    func headsNearThePoolLimit(pool: Int) throws {
        // With CORS, so a stream's response head is as large as the hub makes it.
        let server = try makeServer {
            $0.connectionMemoryLimit = pool
            $0.corsOrigins = ["https://example.com"]
        }
        defer { server.stop() }
        var silent: [String] = []
        func probe(_ label: String, _ request: String) throws {
            let (status, c) = try rawRequest(port: server.port, Array(request.utf8), timeout: 3)
            c.close()
            if status == nil { silent.append(label) }
        }
        // One large header, in steps fine enough to land in every window near the limit.
        for size in stride(from: pool - 1_200, to: pool + 200, by: 23) {
            try probe(
                "header of \(size)",
                "GET /events/x HTTP/1.1\r\nHost: x\r\nOrigin: https://example.com\r\nX-Big: \(String(repeating: "a", count: size))\r\n\r\n"
            )
        }
        // Many small headers, and many query parameters.
        for count in stride(from: 10, to: pool / 40, by: pool / 400) {
            let headers = (0..<count).map { "X-\($0): y\r\n" }.joined()
            try probe(
                "\(count) headers", "GET /events/x HTTP/1.1\r\nHost: x\r\nOrigin: https://example.com\r\n\(headers)\r\n"
            )
            let query = (0..<count).map { "channel=c\($0)" }.joined(separator: "&")
            try probe("\(count) channels", "GET /events?\(query) HTTP/1.1\r\nHost: x\r\n\r\n")
        }
        #expect(silent.isEmpty, "closed without a status line: \(silent)")
    }

    // MARK: HEAD on streams

    @Test("HEAD on a stream route sends the stream's head and no body; the connection stays usable")
    func headOnStreams() throws {
        let server = try makeServer()
        defer { server.stop() }
        let ran = Atomic<Int>(0)
        try server.addStreamRoute("/talk") { _, _ in ran.add(1, ordering: .relaxed) }
        for path in ["/events/x", "/events?channel=a&channel=b", "/talk"] {
            let c = try RawConnection(port: server.port)
            defer { c.close() }
            try c.send("HEAD \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
            let head = try c.readHead()
            #expect(head.status == 200, "\(path)")
            #expect(head.header("Content-Type")?.hasPrefix("text/event-stream") == true, "\(path)")
            try c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let next = try #require(try? c.readHead(), "\(path): the next response is not a status line")
            #expect(next.status == 200, "\(path)")
        }
        #expect(ran.load(ordering: .relaxed) == 0)
        #expect(eventually { server.statistics.clients == 0 })
    }
}
