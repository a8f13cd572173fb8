import Logging
import MicroSSETestSupport
import Synchronization
import Testing

@testable import MicroSSE

/// A log handler that keeps every message.
private struct Capture: LogHandler {
    let lines: Lines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) { lines.append("\(event.message)") }
}

final class Lines: Sendable {
    private let all = Mutex<[String]>([])
    func append(_ line: String) { all.withLock { $0.append(line) } }
    var lines: [String] { all.withLock { $0 } }
}

@Suite("access log")
struct AccessLogTests {
    private func server(_ lines: Lines) throws -> Server {
        var config = ServerConfiguration()
        config.port = 0
        config.heartbeatSeconds = 1  // a closed idle stream is noticed at its next write
        let server = try Server(validating: config)
        server.setAccessLog(Logger(label: "access") { _ in Capture(lines: lines) })
        try server.start()
        return server
    }

    @Test("an ended stream writes one line: who, what, status, how long; credentials redacted")
    func streamLine() throws {
        let lines = Lines()
        let server = try server(lines)
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/news?authorization=s3cret&x=1")
        #expect(eventually { server.statistics.clients == 1 })
        #expect(lines.lines.isEmpty)
        stream.close()
        #expect(eventually { lines.lines.count == 1 })
        let line = try #require(lines.lines.first)
        #expect(line.hasPrefix("access remote=127.0.0.1 method=GET path=/events/news?authorization=[redacted]&x=1"))
        #expect(line.contains(" status=200 bytes=- duration="))
        #expect(line.contains(" stream="))
        #expect(!line.contains("s3cret"))
    }

    @Test("a stream still open when the server stops is logged as it ends")
    func streamEndedByStop() throws {
        let lines = Lines()
        let server = try server(lines)
        let stream = try EventStreamClient(port: server.port, path: "/events/a?access_token=t0k")
        #expect(eventually { server.statistics.clients == 1 })
        server.stop()
        #expect(try stream.waitForEnd())
        #expect(lines.lines.count == 1)
        #expect(lines.lines.first?.contains("path=/events/a?access_token=[redacted]") == true)
    }

    // The router writes a request's line through `Hub.answered(_:_:since:)`; this drives that
    // entry point the way `Router.handle` does.
    @Test("a plain request's line has its status and body bytes")
    func requestLine() throws {
        let lines = Lines()
        let server = try server(lines)
        defer { server.stop() }
        let request = Request(
            method: "POST", path: "/events/news", query: [("authorization", "tok en")], remoteAddress: "10.1.2.3")
        let refusal = Response.text("nope", status: 401)
        server.hub.answered(request, .response(refusal), since: .now)
        let line = try #require(lines.lines.first)
        #expect(line.hasPrefix("access remote=10.1.2.3 method=POST path=/events/news?authorization=[redacted]"))
        #expect(line.contains(" status=401 bytes=\(refusal.body.count) duration=0.00"))
        #expect(!line.contains("stream="))
    }

    @Test("paths are one token: spaces, quotes and separators escaped")
    func escaping() {
        let request = Request(method: "GET", path: "/a b\"c", query: [("q", "x&y=z")], remoteAddress: "::1")
        #expect(AccessLog.loggedPath(request) == "/a%20b%22c?q=x%26y%3Dz")
    }
}
