import MicroSSE
import MicroSSETestSupport
import Testing

/// The libmicrohttpd settings the benchmarks tuned: the per-connection pool and the thread pool.
@Suite("Connection memory and polling threads")
struct ConnectionMemoryTests {
    /// The headers a browser sends with an EventSource request, plus a cookie of `cookie` bytes.
    func browserHeaders(cookie: Int) -> [(String, String)] {
        [
            (
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
            ),
            ("Cache-Control", "no-cache"), ("Accept-Language", "en-US,en;q=0.9"),
            ("Accept-Encoding", "gzip, deflate, br"),
            ("Referer", "https://example.com/dashboard/live"), ("Connection", "keep-alive"),
            ("Cookie", "session=" + String(repeating: "c", count: cookie)),
        ]
    }

    @Test("the default pool is libmicrohttpd's 32 KiB")
    func defaultPool() {
        #expect(ServerConfiguration().connectionMemoryLimit == 32 << 10)
    }

    @Test("with the default pool, a subscribe request with 16 KB of headers streams")
    func largeHeadersFit() throws {
        let server = try makeServer()
        defer { server.stop() }
        let stream = try EventStreamClient(
            port: server.port, path: "/events/news", headers: browserHeaders(cookie: 15_500))
        #expect(stream.status == 200)
        try #require(eventually { server.statistics.clients == 1 })
        try server.publish("hello", to: "news")
        #expect(try stream.next()?.data == "hello")
    }

    @Test("with the default pool, a browser-like subscribe request with 2 KB of headers streams")
    func browserRequestFits() throws {
        let server = try makeServer()
        defer { server.stop() }
        let stream = try EventStreamClient(
            port: server.port, path: "/events/news", headers: browserHeaders(cookie: 1_700))
        #expect(stream.status == 200)
        try #require(eventually { server.statistics.clients == 1 })
        try server.publish("hello", to: "news")
        #expect(try stream.next()?.data == "hello")
    }

    @Test("a request larger than the pool is refused with 431, and a larger pool accepts it")
    func largerThanPool() throws {
        let headers = browserHeaders(cookie: 6_000)
        let small = try makeServer { $0.connectionMemoryLimit = 5 << 10 }
        defer { small.stop() }
        #expect(try httpRequest(port: small.port, path: "/healthz", headers: headers).status == 431)
        let large = try makeServer { $0.connectionMemoryLimit = 16 << 10 }
        defer { large.stop() }
        #expect(try httpRequest(port: large.port, path: "/healthz", headers: headers).status == 200)
    }

    // libmicrohttpd refuses these itself, before MicroSSE sees the request: a header line
    // longer than the pool can hold, and cookies whose parsed copy does not fit the pool beside the
    // request. Its answer is its own (an HTML body; 0.9.75 sometimes writes its head twice, see
    // docs/RELIABILITY.md), but the status is 431 and the connection is closed, never silently.
    @Test("requests libmicrohttpd refuses itself for room (a huge line, cookies it cannot copy) get 431")
    func refusedByLibmicrohttpd() throws {
        let server = try makeServer()
        defer { server.stop() }
        let requests = [
            "X-Big: \(String(repeating: "b", count: 33_000))",
            "Cookie: s=\(String(repeating: "c", count: 12_000))\r\nX-A: \(String(repeating: "d", count: 9_000))",
        ]
        for header in requests {
            let c = try RawConnection(port: server.port)
            defer { c.close() }
            try c.send("GET /events/news HTTP/1.1\r\nHost: x\r\n\(header)\r\n\r\n")
            #expect(try c.readHead().status == 431)
            #expect(try c.waitForClose(timeout: 5))
        }
        #expect(server.statistics.clients == 0)
    }

    @Test("an event larger than the pool reaches every subscriber whole")
    func eventLargerThanPool() throws {
        let server = try makeServer()
        defer { server.stop() }
        let streams = try (0..<5).map { _ in try EventStreamClient(port: server.port, path: "/events/big") }
        try #require(eventually { server.statistics.clients == 5 })
        let payload = String(repeating: "0123456789abcdef", count: 3_072)  // 48 KiB
        try server.publish(payload, to: "big")
        for stream in streams { #expect(try stream.next()?.data == payload) }
    }

    @Test("with a thread pool, every subscriber gets every event in publish order")
    func threadPool() throws {
        let server = try makeServer { $0.threadPoolSize = 2 }
        let streams = try (0..<20).map { _ in try EventStreamClient(port: server.port, path: "/events/feed") }
        try #require(eventually { server.statistics.clients == 20 })
        for i in 0..<100 { try server.publish("event \(i)", to: "feed") }
        for stream in streams {
            #expect(try stream.events(100).map(\.data) == (0..<100).map { "event \($0)" })
        }
        server.stop()
        for stream in streams { #expect(try stream.waitForEnd()) }
    }
}
