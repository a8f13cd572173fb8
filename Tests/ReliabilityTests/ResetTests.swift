import MicroSSE
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Connections opened and reset abruptly leave no file descriptor, stream or memory behind.
/// The server runs in the test process, so /proc/self counts both sides; the client sockets
/// are closed before the counts are compared.
@Suite("Abrupt resets leave nothing behind", .serialized)
struct ResetTests {
    /// Opens `count` connections in batches, does `each` on every one, then resets them all.
    func churn(_ port: UInt16, count: Int, batch: Int = 250, _ each: (Int, RawConnection) throws -> Void) throws {
        var done = 0
        while done < count {
            let n = min(batch, count - done)
            var open: [RawConnection] = []
            for i in 0..<n {
                let c = try RawConnection(port: port)
                try? each(done + i, c)
                open.append(c)
            }
            for c in open { c.reset() }
            done += n
        }
    }

    @Test("2,000 connections reset mid-request leave the fd count and RSS where they started")
    func resetMidRequest() throws {
        let server = try makeServer { $0.connectionTimeoutSeconds = 30 }
        defer { server.stop() }
        let port = server.port
        let kinds = [
            "", "GET /events/x HTTP/1.1\r\nHo", "POST /events/x HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\nabc",
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "GET /events/x HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
        ]
        // Warm up allocator pools and MHD's structures, then take the baseline.
        try churn(port, count: 200) { i, c in try c.send(kinds[i % kinds.count]) }
        try settle(server)
        let fds = openFileCount()
        let rss = residentKiB()
        try churn(port, count: 2_000) { i, c in try c.send(kinds[i % kinds.count]) }
        try settle(server)
        let fdsAfter = openFileCount()
        let rssAfter = residentKiB()
        #expect(fdsAfter <= fds + 2, "fds \(fds) -> \(fdsAfter)")
        #expect(rssAfter - rss < 8 * 1024, "RSS \(rss) KiB -> \(rssAfter) KiB")
        #expect(try httpRequest(port: port, path: "/healthz").status == 200)
    }

    @Test("2,000 streams reset while suspended are freed once written to")
    func resetSuspendedStreams() throws {
        let server = try makeServer()
        defer { server.stop() }
        let port = server.port
        try churnStreams(server, count: 200)
        let fds = openFileCount()
        let rss = residentKiB()
        try churnStreams(server, count: 2_000)
        let fdsAfter = openFileCount()
        let rssAfter = residentKiB()
        #expect(fdsAfter <= fds + 2, "fds \(fds) -> \(fdsAfter)")
        #expect(rssAfter - rss < 8 * 1024, "RSS \(rss) KiB -> \(rssAfter) KiB")
        let s = server.statistics
        #expect(s.clients == 0)
        #expect(s.disconnects == 2_200)
        #expect(try httpRequest(port: port, path: "/healthz").status == 200)
    }

    /// Opens streams in batches, waits until each batch is suspended, resets it, then publishes
    /// until the server has noticed every reset (MHD-NOTES trap 1: only a write reveals it).
    func churnStreams(_ server: Server, count: Int) throws {
        var done = 0
        while done < count {
            let n = min(250, count - done)
            let streams = try (0..<n).map { _ in try EventStreamClient(port: server.port, path: "/events/r") }
            try #require(eventually(timeout: 10) { server.statistics.clients == n })
            for s in streams { s.connection.reset() }
            let gone = eventually(timeout: 10) {
                _ = try? server.publish("poke", to: "r")
                return server.statistics.clients == 0
            }
            try #require(gone, "\(server.statistics.clients) streams still open after reset")
            done += n
        }
    }

    /// Waits until the server has closed every connection the churn left (fd count stable).
    func settle(_ server: Server) throws {
        var last = -1
        var stable = 0
        _ = eventually(timeout: 10) {
            _ = try? server.publish("poke", to: "x")  // reveals reset streams
            let n = openFileCount()
            stable = n == last ? stable + 1 : 0
            last = n
            return stable >= 25 && server.statistics.clients == 0
        }
    }
}
