import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Connections opened and reset abruptly leave no file descriptor, stream or memory behind.
/// The server is the real `microsse serve` in its own process, so its fd count and RSS are not
/// disturbed by other tests running in parallel in the test process.
@Suite("Abrupt resets leave nothing behind", .serialized)
struct ResetTests {
    /// Open fds, VmRSS (KiB) and threads of a process.
    static func sample(_ pid: Int32) -> (fds: Int, rssKiB: Int, threads: Int) {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
        var rss = -1
        var threads = -1
        if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) {
            for line in status.split(separator: "\n") {
                let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                if line.hasPrefix("VmRSS:"), parts.count >= 2 { rss = Int(parts[1]) ?? -1 }
                if line.hasPrefix("Threads:"), parts.count >= 2 { threads = Int(parts[1]) ?? -1 }
            }
        }
        return (fds, rss, threads)
    }

    static func clients(_ port: UInt16) -> Int? {
        guard let r = try? httpRequest(port: port, path: "/stats", timeout: 2), r.status == 200 else { return nil }
        guard let range = r.text.range(of: "\"clients\":") else { return nil }
        return Int(r.text[range.upperBound...].prefix { $0.isNumber })
    }

    /// Opens `count` connections in batches, sends each its bytes, then resets the batch.
    func churn(_ port: UInt16, count: Int, batch: Int = 250, _ bytes: (Int) -> String) throws {
        var done = 0
        while done < count {
            let n = min(batch, count - done)
            var open: [RawConnection] = []
            for i in 0..<n {
                let c = try RawConnection(port: port)
                try? c.send(bytes(done + i))
                open.append(c)
            }
            for c in open { c.reset() }
            // Reveal the reset streams of this batch at once (docs/DESIGN.md: dead suspended peers), so they do not
            // pile up across batches: the test is about what is left, not about peak memory.
            _ = try? httpRequest(port: port, method: "POST", path: "/events/poke", body: Array("p".utf8))
            done += n
        }
    }

    /// Waits until the server is back to `fds` open descriptors (polling; publishing reveals
    /// reset streams, docs/DESIGN.md: dead suspended peers). Returns the last sample.
    func settle(_ server: ServerProcess, fds: Int) -> (fds: Int, rssKiB: Int, threads: Int) {
        let pid = server.process.processIdentifier
        var last = Self.sample(pid)
        _ = eventually(timeout: 15) {
            _ = try? httpRequest(port: server.port, method: "POST", path: "/events/poke", body: Array("p".utf8))
            last = Self.sample(pid)
            return last.fds <= fds && Self.clients(server.port) == 0
        }
        return last
    }

    static let kinds = [
        "", "GET /events/x HTTP/1.1\r\nHo", "POST /events/x HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\nabc",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /events/poke HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
        "\u{0}\u{1}garbage\r\n\r\n",
    ]

    @Test("2,000 connections reset mid-request leave the server's fd count and RSS where they started")
    func resetMidRequest() throws {
        let server = try ServerProcess(["serve", "--port", "0", "--heartbeat", "1"])
        let pid = server.process.processIdentifier
        // Warm up allocator pools and MHD's structures, then take the baseline.
        try churn(server.port, count: 300) { Self.kinds[$0 % Self.kinds.count] }
        let before = settle(server, fds: Self.sample(pid).fds)
        try churn(server.port, count: Self.count) { Self.kinds[$0 % Self.kinds.count] }
        let after = settle(server, fds: before.fds)
        Self.report("mid-request", before, after)
        #expect(after.fds <= before.fds, "fds \(before.fds) -> \(after.fds)")
        #expect(
            runningUnderSanitizer || after.rssKiB - before.rssKiB < 8 * 1024,
            "RSS \(before.rssKiB) KiB -> \(after.rssKiB) KiB")
        #expect(after.threads <= before.threads, "threads \(before.threads) -> \(after.threads)")
        #expect(try httpRequest(port: server.port, path: "/healthz").status == 200)
    }

    @Test("2,000 streams reset while suspended are freed once written to")
    func resetSuspendedStreams() throws {
        let server = try ServerProcess(["serve", "--port", "0", "--heartbeat", "1"])
        let pid = server.process.processIdentifier
        try churnStreams(server, count: 250)
        let before = settle(server, fds: Self.sample(pid).fds)
        try churnStreams(server, count: Self.count)
        let after = settle(server, fds: before.fds)
        #expect(after.fds <= before.fds, "fds \(before.fds) -> \(after.fds)")
        #expect(
            runningUnderSanitizer || after.rssKiB - before.rssKiB < 8 * 1024,
            "RSS \(before.rssKiB) KiB -> \(after.rssKiB) KiB")
        Self.report("streams", before, after)
        #expect(Self.clients(server.port) == 0)
        #expect(try httpRequest(port: server.port, path: "/healthz").status == 200)
    }

    /// Connections per test: 2,000 in `make test`; RELIABILITY_RESETS=10000 for the measured run
    /// in docs/RELIABILITY.md.
    static let count = ProcessInfo.processInfo.environment["RELIABILITY_RESETS"].flatMap(Int.init) ?? 2_000

    /// One line with the figures, for docs/RELIABILITY.md.
    static func report(
        _ what: String, _ a: (fds: Int, rssKiB: Int, threads: Int), _ b: (fds: Int, rssKiB: Int, threads: Int)
    ) {
        print(
            "reliability: \(count) resets (\(what)): fds \(a.fds) -> \(b.fds), RSS \(a.rssKiB) -> \(b.rssKiB) KiB, threads \(a.threads) -> \(b.threads)"
        )
    }

    /// Opens streams in batches, waits until each batch is open, resets it, then publishes
    /// until the server has noticed every reset.
    func churnStreams(_ server: ServerProcess, count: Int) throws {
        var done = 0
        while done < count {
            let n = min(250, count - done)
            let streams = try (0..<n).map { _ in try EventStreamClient(port: server.port, path: "/events/r") }
            try #require(eventually(timeout: 10) { Self.clients(server.port) == n })
            for s in streams { s.connection.reset() }
            let gone = eventually(timeout: 15) {
                _ = try? httpRequest(port: server.port, method: "POST", path: "/events/r", body: Array("p".utf8))
                return Self.clients(server.port) == 0
            }
            try #require(gone, "streams still open after reset: \(Self.clients(server.port) ?? -1)")
            done += n
        }
    }
}
