// `microsse doctor` against servers that do not play fair: a raw socket server written here
// that sends a line that never ends, events or comments as fast as it can, a chunk announced as
// 10 GiB, a publish reply after 9.5 s, or a reason phrase with terminal escapes. The doctor must
// fail, with bounded memory, within the time its options state; and take its token from a file
// or the environment.
import Foundation
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// How the hostile server answers.
enum Hostility: Sendable {
    /// A stream whose first line is `data: ` and then `x` forever.
    case endlessLine
    /// `data: x` events, back to back, forever.
    case eventFlood
    /// `:` comments (heartbeats), back to back, forever.
    case commentFlood
    /// A chunked stream announcing one chunk of 10 GiB, filled with one event's `data:` lines
    /// that never reach a blank line.
    case hugeChunk
    /// A quiet stream; a publish (POST) is answered `202` only after this many seconds.
    case slowPublish(Double)
    /// A `503` whose reason phrase holds ANSI escapes and a bare LF forging a report line.
    case ansiReason
}

/// A raw TCP server on 127.0.0.1 that answers every connection as its ``Hostility`` says.
final class HostileServer: @unchecked Sendable {
    let port: UInt16
    private let listener: Int32
    private let mode: Hostility

    init(_ mode: Hostility) throws {
        self.mode = mode
        (listener, port) = try ephemeralSocket(backlog: 16)
        acceptEach(listener) { [self] client in
            serve(client)
            close(client)
        }
    }

    func stop() { shutdown(listener, Int32(SHUT_RDWR)) }

    deinit {
        stop()
        close(listener)
    }

    /// Sends all of `bytes`; false once the peer is gone.
    private func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// The request head's first line (the body of a small POST is read and dropped with it).
    private func readRequest(_ fd: Int32) -> String? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65536 {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return nil }
            bytes += buffer[0..<n]
            let text = String(decoding: bytes, as: UTF8.self)
            guard let end = text.range(of: "\r\n\r\n") else { continue }
            let head = text[..<end.lowerBound]
            let length =
                head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            if text[end.upperBound...].utf8.count >= length { return String(head.prefix { $0 != "\r" }) }
        }
        return nil
    }

    /// Waits until the peer closes, or `seconds` pass; false when it closed.
    private func hold(_ fd: Int32, seconds: Double) -> Bool {
        let deadline = now() + seconds
        var buffer = [UInt8](repeating: 0, count: 4096)
        while now() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32(max(1, (deadline - now()) * 1000))) > 0, recv(fd, &buffer, buffer.count, 0) <= 0 {
                return false
            }
        }
        return true
    }

    private func serve(_ fd: Int32) {
        guard let requestLine = readRequest(fd) else { return }
        let streamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        func forever(_ head: String, _ first: String, _ unit: String) {
            guard send(fd, Array((head + first).utf8)) else { return }
            var block: [UInt8] = []
            while block.count < 65536 { block += Array(unit.utf8) }
            while send(fd, block) {}
        }
        switch mode {
        case .endlessLine:
            forever(streamHead + "\r\n", "data: ", "x")
        case .eventFlood:
            forever(streamHead + "\r\n", "", "data: x\n\n")
        case .commentFlood:
            forever(streamHead + "\r\n", "", ":\n")
        case .hugeChunk:
            forever(
                streamHead + "Transfer-Encoding: chunked\r\n\r\n", "280000000\r\n",
                "data: " + String(repeating: "y", count: 1000) + "\n")
        case .slowPublish(let delay):
            if requestLine.hasPrefix("POST ") {
                guard hold(fd, seconds: delay) else { return }
                _ = send(fd, Array("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
            } else {
                guard send(fd, Array((streamHead + "Transfer-Encoding: chunked\r\n\r\n").utf8)) else { return }
                _ = hold(fd, seconds: 120)
            }
        case .ansiReason:
            let reason = "Busy\u{1B}[1A\u{1B}[2K\rok\nok    buffering: p50/max delay 1/1 ms\u{1B}[0m"
            _ = send(fd, Array("HTTP/1.1 503 \(reason)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
        }
    }
}

/// A finished doctor run: its output, how long it took and its peak resident memory.
struct MeasuredRun {
    var result: ToolResult
    var seconds: Double
    /// The largest VmHWM read from /proc while it ran, in KiB.
    var peakKiB: Int
}

/// The peak resident set size (VmHWM) of `pid` in KiB, or nil once it is gone.
private func peakResidentKiB(_ pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
    else { return nil }
    return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
}

/// The most memory a doctor run may reach here; past it the run is killed (and the test fails).
private let memoryCeilingKiB = 512 * 1024

/// Runs `microsse doctor ARGUMENTS...` with `environment` added, watching its memory; killed
/// after `timeout` seconds or past ``memoryCeilingKiB``.
func measuredDoctor(_ arguments: [String], environment: [String: String] = [:], timeout: Double = 90) throws
    -> MeasuredRun
{
    let dir = try temporaryDirectory("measured")
    defer { try? FileManager.default.removeItem(at: dir) }
    let outURL = dir.appendingPathComponent("out")
    let errURL = dir.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: microsseExecutable())
    p.arguments = ["doctor"] + arguments
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    p.standardOutput = try FileHandle(forWritingTo: outURL)
    p.standardError = try FileHandle(forWritingTo: errURL)
    let started = now()
    try p.run()
    let pid = p.processIdentifier
    var peak = 0
    _ = eventually(timeout: timeout) {
        if let kib = peakResidentKiB(pid) { peak = max(peak, kib) }
        if peak > memoryCeilingKiB { kill(pid, SIGKILL) }
        return !p.isRunning
    }
    if p.isRunning { kill(pid, SIGKILL) }
    p.waitUntilExit()
    let result = ToolResult(
        status: p.terminationStatus, out: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
        err: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    let run = MeasuredRun(result: result, seconds: now() - started, peakKiB: peak)
    print(result.out + result.err + "(\(run.seconds) s, peak \(peak) KiB)")
    return run
}

@Suite("microsse doctor against hostile servers", .serialized)
struct HostileServerTests {
    /// Without --publish the doctor watches for --idle after --wait for the head.
    static let idle = 10.0
    static let wait = 3.0

    @Test(
        "a stream past a bound fails its check at once, with bounded memory",
        arguments: [
            (Hostility.endlessLine, "a line longer than 4 MiB"),
            (Hostility.eventFlood, "the stream sent more than 100000 events and comments"),
            (Hostility.commentFlood, "the stream sent more than 100000 events and comments"),
            (Hostility.hugeChunk, "an event longer than 4 MiB"),
        ])
    func boundedStream(mode: Hostility, reason: String) throws {
        let server = try HostileServer(mode)
        defer { server.stop() }
        // --idle reads for the whole window (without it, the first heartbeat ends the watch).
        let run = try measuredDoctor([
            "http://127.0.0.1:\(server.port)/events/x", "--idle", String(Self.idle), "--wait", String(Self.wait),
        ])
        #expect(run.result.status == 1)
        let line = try #require(run.result.line("stream"), "no stream line")
        #expect(line.hasPrefix("FAIL  stream: \(reason)"), "\(line)")
        #expect(run.result.out.contains("check(s) failed:\n"))
        // The bounds hold memory to tens of MiB over the doctor's own (the unbounded doctor
        // reached 2 GB); and the run ends within what its options state, plus a margin.
        #expect(run.peakKiB > 0 && run.peakKiB < 128 * 1024, "peak \(run.peakKiB) KiB")
        #expect(run.seconds < Self.wait + Self.idle + 10, "\(run.seconds) s")
    }

    @Test("a publish answered after 9.5 s: FAIL within the stated bound of --wait 3, not 47 s")
    func slowPublish() throws {
        let server = try HostileServer(.slowPublish(9.5))
        defer { server.stop() }
        let url = "http://127.0.0.1:\(server.port)/events/doctor-probe"
        let run = try measuredDoctor([url, "--publish", url, "--wait", "3"])
        #expect(run.result.status == 1)
        let line = try #require(run.result.line("publish"))
        #expect(line.hasPrefix("FAIL  publish: "), "\(line)")
        #expect(line.contains("no response in time"), "\(line)")
        // The stated bound: 7 x --wait + 1 s (the probe phase alone: 0.8 s + 2 x --wait).
        #expect(run.seconds < 7 * 3 + 1, "\(run.seconds) s")
    }

    @Test("a reason phrase with ANSI escapes and a bare LF is printed escaped: no forged line")
    func escapedReason() throws {
        let server = try HostileServer(.ansiReason)
        defer { server.stop() }
        let run = try measuredDoctor(["http://127.0.0.1:\(server.port)/events/x", "--wait", "3"])
        #expect(run.result.status == 1)
        #expect(!run.result.out.contains("\u{1B}"))
        #expect(!run.result.lines.contains { $0.hasPrefix("ok    buffering") })
        let line = try #require(run.result.line("status"))
        #expect(line.hasPrefix("FAIL  status: 503 Busy\\u{1B}[1A\\u{1B}[2K\\u{D}ok\\u{A}ok    buffering:"), "\(line)")
    }

    @Test("the publish token from --token-file or MICROSSE_DOCTOR_TOKEN; none: 401 is a FAIL")
    func tokenSources() throws {
        let hub = try ServerProcess(["serve", "--port", "0", "--heartbeat", "1", "--publish-token", "s3cret"])
        let url = "http://127.0.0.1:\(hub.port)/events/doctor-probe"
        let dir = try temporaryDirectory("token")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("token").path
        try "s3cret\n".write(toFile: file, atomically: true, encoding: .utf8)

        let fromFile = try measuredDoctor([url, "--publish", url, "--token-file", file])
        #expect(fromFile.result.status == 0)
        #expect(fromFile.result.line("publish")?.hasPrefix("ok    publish: ") == true)

        let fromEnvironment = try measuredDoctor(
            [url, "--publish", url], environment: ["MICROSSE_DOCTOR_TOKEN": "s3cret"])
        #expect(fromEnvironment.result.status == 0)
        #expect(fromEnvironment.result.line("resume")?.hasPrefix("ok    resume: ") == true)

        let none = try measuredDoctor([url, "--publish", url], environment: ["MICROSSE_DOCTOR_TOKEN": ""])
        #expect(none.result.status == 1)
        #expect(none.result.line("publish")?.contains("401") == true)

        let both = try measuredDoctor([url, "--token", "a", "--token-file", file])
        #expect(both.result.status != 0)
        #expect(both.result.err.contains("give --token or --token-file, not both"))

        // A token that would break the header line is refused, naming no secret.
        let broken = try measuredDoctor(
            [url, "--publish", url], environment: ["MICROSSE_DOCTOR_TOKEN": "s3cret\r\nX-Injected: 1"])
        #expect(broken.result.status != 0)
        #expect(broken.result.err.contains("the publish token must be visible ASCII"))
        #expect(!broken.result.err.contains("s3cret") && !broken.result.out.contains("s3cret"))
    }
}
