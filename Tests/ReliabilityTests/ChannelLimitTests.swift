import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `maxChannelsPerStream` over raw sockets: a subscribe naming more distinct channels than the
/// limit gets `400` with a one-line reason naming it; at the limit (duplicates not counted) it
/// streams.
@Suite("Channels per stream")
struct ChannelLimitTests {
    private static func subscribe(_ port: UInt16, _ names: [String]) throws -> (status: Int, body: String) {
        let query = names.map { "channel=\($0)" }.joined(separator: "&")
        let c = try RawConnection(port: port)
        defer { c.close() }
        try c.send("GET /events?\(query) HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        let head = try c.readHead(timeout: 5)
        if head.status != 200 {
            return (head.status, String(decoding: try c.readAvailable(deadline: now() + 2), as: UTF8.self))
        }
        return (head.status, "")
    }

    @Test("the default is 32, and validate() refuses less than 1")
    func defaultAndValidation() throws {
        var config = ServerConfiguration()
        #expect(config.maxChannelsPerStream == 32)
        config.maxChannelsPerStream = 0
        #expect(throws: MicroSSEError.self) { try config.validate() }
    }

    @Test("a subscribe over the limit gets 400 naming the limit; at the limit it streams")
    func overTheLimitRefused() throws {
        let server = try makeServer { $0.maxChannelsPerStream = 4 }
        defer { server.stop() }
        let four = (0..<4).map { "c\($0)" }
        let atLimit = try Self.subscribe(server.port, four)
        #expect(atLimit.status == 200)
        // Duplicates are not counted: still four distinct channels.
        #expect(try Self.subscribe(server.port, four + four + ["c0"]).status == 200)
        let over = try Self.subscribe(server.port, four + ["c4"])
        #expect(over.status == 400)
        #expect(over.body.contains("at most 4 per stream"), "\(over.body)")
        #expect(over.body.contains("5 distinct channels"), "\(over.body)")
        #expect(!over.body.dropLast().contains("\n"), "not one line: \(over.body.debugDescription)")
        #expect(eventually { server.statistics.clients == 0 })
    }

    @Test("with the default, 33 channels of the longest name get 400 rather than a 414 or silence")
    func defaultLimitWithLongNames() throws {
        let server = try makeServer()
        defer { server.stop() }
        let long = (0..<33).map { i in "c\(i)-" + String(repeating: "x", count: 128 - "c\(i)-".count) }
        #expect(try Self.subscribe(server.port, Array(long.prefix(32))).status == 200)
        let over = try Self.subscribe(server.port, long)
        #expect(over.status == 400)
        #expect(over.body.contains("at most 32 per stream"), "\(over.body)")
    }

    @Test("serve --max-channels-per-stream 2 refuses a third channel; 0 refuses to start")
    func fromTheCLI() throws {
        let server = try ServerProcess(["serve", "--port", "0", "--max-channels-per-stream", "2"])
        defer { server.signal(SIGTERM) }
        #expect(try Self.subscribe(server.port, ["a", "b"]).status == 200)
        let over = try Self.subscribe(server.port, ["a", "b", "c"])
        #expect(over.status == 400)
        #expect(over.body.contains("at most 2 per stream"), "\(over.body)")

        let (status, text) = try runToExit(["serve", "--port", "0", "--max-channels-per-stream", "0"])
        #expect(status != 0)
        #expect(text.contains("maxChannelsPerStream must be at least 1"), "\(text)")
    }
}
