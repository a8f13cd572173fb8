import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `--history-memory` bounds what the history really takes: the real `microsse serve` (its own
/// process, so its RSS is its own) at a 64 MiB budget, other settings at their defaults, fed
/// tiny events to new channels and then 1 MiB events, grows by at most the budget and 32 MiB.
/// (scripts/history-memory-rss.py runs the full scenario: 300,000 channels.)
@Suite("The history budget bounds the server's memory", .serialized)
struct HistoryMemoryTests {
    static let budget = 64 << 20
    static let slack = 32 << 20

    /// The resident set size of `pid` in bytes.
    static func rss(_ pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if parts.count >= 2, let kib = Int(parts[1]) { return kib << 10 }
        }
        return -1
    }

    /// Publishes `bodies[i]` to `channel(i)` over one keep-alive connection, `window` requests
    /// in flight; every answer must be 202.
    static func publish(
        _ c: RawConnection, port: UInt16, count: Int, window: Int, channel: (Int) -> String, body: [UInt8]
    ) throws {
        var sent = 0
        while sent < count {
            let n = min(window, count - sent)
            var batch: [UInt8] = []
            for i in sent..<(sent + n) {
                batch += Array(
                    "POST /events/\(channel(i)) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Length: \(body.count)\r\n\r\n"
                        .utf8)
                batch += body
            }
            try c.send(batch)
            for _ in 0..<n {
                let head = try c.readHead(timeout: 30)
                guard head.status == 202 else { throw TestClientError("publish answered \(head.status)") }
                let length = head.header("Content-Length").flatMap(Int.init) ?? 0
                _ = try c.readExactly(length, deadline: now() + 30)
            }
            sent += n
        }
    }

    @Test(
        "at a 64 MiB budget, 100,000 one-byte events to new channels and then 200 of 1 MiB grow RSS by at most the budget + 32 MiB"
    )
    func boundedRSS() throws {
        // Sanitizers' shadow memory and quarantine make RSS meaningless.
        guard !runningUnderSanitizer else { return }
        let server = try ServerProcess(["serve", "--port", "0", "--history-memory", String(Self.budget)])
        defer {
            server.signal(SIGTERM)
            _ = server.waitForExit()
        }
        let pid = server.process.processIdentifier
        let c = try RawConnection(port: server.port)
        defer { c.close() }
        try Self.publish(c, port: server.port, count: 1, window: 1, channel: { _ in "warm" }, body: [0x78])
        let base = Self.rss(pid)
        var grown = 0
        // RSS may drop a moment after the last publish (memory is given back off the publishing
        // thread): wait for it within a deadline.
        func settled() -> Bool {
            _ = eventually(timeout: 10) {
                grown = Self.rss(pid) - base
                return grown <= Self.budget + Self.slack
            }
            return grown <= Self.budget + Self.slack
        }

        try Self.publish(c, port: server.port, count: 100_000, window: 32, channel: { "c\($0)" }, body: [0x78])
        #expect(settled(), "100,000 tiny channels: RSS grew by \(grown >> 20) MiB")
        print("history memory: 100,000 tiny channels: RSS +\(grown >> 20) MiB at a \(Self.budget >> 20) MiB budget")

        let big = [UInt8](repeating: 0x79, count: 1 << 20)
        try Self.publish(c, port: server.port, count: 200, window: 1, channel: { "big\($0)" }, body: big)
        #expect(settled(), "then 200 events of 1 MiB: RSS grew by \(grown >> 20) MiB")
        print("history memory: then 200 x 1 MiB: RSS +\(grown >> 20) MiB at a \(Self.budget >> 20) MiB budget")
    }
}
