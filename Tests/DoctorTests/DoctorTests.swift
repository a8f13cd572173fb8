// `microsse doctor` against a real hub, directly and through a real nginx running the shipped
// deploy config and broken variants of it; and the deploy files themselves.
import Foundation
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Starts `microsse serve` on an ephemeral port with a publish token.
private func startHub(heartbeat: Int) throws -> ServerProcess {
    try ServerProcess(["serve", "--port", "0", "--heartbeat", String(heartbeat), "--publish-token", "s3cret"])
}

/// The doctor's arguments for a stream and its publish URL on `port` (one channel).
private func probeArguments(port: UInt16, _ extra: [String] = []) -> [String] {
    let url = "http://127.0.0.1:\(port)/events/doctor-probe"
    return [url, "--publish", url, "--token", "s3cret"] + extra
}

/// The checks every report has, in order, when the stream's head arrives.
private let headerChecks = [
    "status", "http version", "content-type", "cache-control", "x-accel-buffering", "content-encoding",
    "transfer-encoding",
]

// Serialized: the tests measure delays, and two at once on two cores would blur them.
@Suite("microsse doctor and the deploy files", .serialized)
struct DoctorTests {
    @Test("directly against the hub: every check ok, exit 0")
    func healthyHub() throws {
        let hub = try startHub(heartbeat: 1)
        let result = try doctor(probeArguments(port: hub.port, ["--idle", "2"]))
        #expect(result.status == 0)
        let checks = headerChecks + ["publish", "buffering", "idle", "resume"]
        for check in checks {
            let line = try #require(result.line(check), "no \(check) line")
            #expect(line.hasPrefix("ok    \(check): "), "\(line)")
        }
        #expect(result.lines.filter { $0.hasPrefix("ok    ") }.count == checks.count)
        #expect(result.line("idle")?.contains("heartbeat(s) came through") == true)
        #expect(result.lines.last == "doctor: no check failed")
    }

    @Test("through nginx with the documented plain-HTTP config: exit 0")
    func documentedNginx() throws {
        let hub = try startHub(heartbeat: 1)
        let nginx = try nginxInFront(of: hub)
        let result = try doctor(probeArguments(port: nginx.port, ["--idle", "2"]))
        #expect(result.status == 0, "\(nginx.errorLog)")
        #expect(!result.out.contains("FAIL"))
        #expect(result.line("buffering")?.hasPrefix("ok    buffering: p50/max delay") == true)
        #expect(result.line("idle")?.hasPrefix("ok    idle: open after 2.0 s") == true)
        #expect(result.line("resume")?.hasPrefix("ok    ") == true)
        // nginx consumes X-Accel-Buffering; the doctor says so without failing.
        #expect(result.line("x-accel-buffering")?.hasPrefix("ok    x-accel-buffering: absent") == true)
    }

    // nginx 1.22 hands each chunk of a chunked (HTTP/1.1) upstream response on at once even with
    // proxy_buffering on; its buffer holds the stream when the hub's response is close-delimited,
    // which it is with nginx's default proxy_http_version 1.0. Buffering on, X-Accel-Buffering
    // ignored and HTTP/1.0 to the hub is what nginx does without the documented lines.
    @Test("through nginx that buffers: the doctor says buffering, exit 1")
    func bufferingNginx() throws {
        let hub = try startHub(heartbeat: 1)
        let nginx = try nginxInFront(
            of: hub,
            [
                ("proxy_buffering off;", "proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;"),
                ("proxy_http_version 1.1;", "proxy_http_version 1.0;"),
            ])
        let result = try doctor(probeArguments(port: nginx.port, ["--wait", "3"]))
        #expect(result.status == 1)
        let line = try #require(result.line("buffering"))
        #expect(line.hasPrefix("FAIL  buffering: events held by something between you and the hub"), "\(line)")
        #expect(result.out.contains("check(s) failed:\n"))
    }

    @Test("through a proxy that lets the body out once a second: bursts are buffering, exit 1")
    func burstingProxy() throws {
        let hub = try startHub(heartbeat: 30)
        let proxy = try BatchingProxy(upstream: hub.port, interval: 1)
        defer { proxy.stop() }
        let result = try doctor([
            "http://127.0.0.1:\(proxy.port)/events/doctor-probe", "--publish",
            "http://127.0.0.1:\(hub.port)/events/doctor-probe", "--token", "s3cret",
        ])
        #expect(result.status == 1)
        let line = try #require(result.line("buffering"))
        #expect(
            line.hasPrefix(
                "FAIL  buffering: events held by something between you and the hub: 5 probe events sent 200 ms apart arrived in bursts"
            ), "\(line)")
        #expect(result.line("status")?.hasPrefix("ok    ") == true)
    }

    @Test("through nginx with proxy_read_timeout 3s: cut after about 3 s, exit 1")
    func idleCut() throws {
        let hub = try startHub(heartbeat: 30)
        let nginx = try nginxInFront(of: hub, [("proxy_read_timeout 1h;", "proxy_read_timeout 3s;")])
        let result = try doctor(probeArguments(port: nginx.port, ["--idle", "5"]))
        #expect(result.status == 1)
        let line = try #require(result.line("idle"))
        let prefix = "FAIL  idle: cut after "
        #expect(line.hasPrefix(prefix), "\(line)")
        let seconds = Double(line.dropFirst(prefix.count).prefix { $0 != " " })
        #expect((2.5...4.5).contains(seconds ?? 0), "\(line)")
        #expect(line.hasSuffix("closes idle connections; set --heartbeat below that"))
        #expect(result.line("buffering")?.hasPrefix("ok    ") == true)
    }

    @Test("through nginx that gzips event streams: content-encoding FAIL, exit 1")
    func gzipNginx() throws {
        let hub = try startHub(heartbeat: 1)
        let nginx = try nginxInFront(
            of: hub, [("gzip off;", "gzip on;\n        gzip_types text/event-stream;\n        gzip_min_length 1;")])
        let result = try doctor(probeArguments(port: nginx.port))
        #expect(result.status == 1)
        #expect(result.line("content-encoding")?.hasPrefix("FAIL  content-encoding: gzip") == true)
        #expect(result.line("buffering")?.hasPrefix("skip  ") == true)
    }

    @Test("without --publish: heartbeats are watched and the limits are stated")
    func heartbeatsOnly() throws {
        let hub = try startHub(heartbeat: 1)
        let result = try doctor(["http://127.0.0.1:\(hub.port)/events/doctor-probe", "--heartbeat-wait", "5"])
        #expect(result.status == 0)
        #expect(result.line("heartbeat")?.hasPrefix("ok    heartbeat: first comment") == true)
        #expect(result.line("buffering")?.hasPrefix("skip  buffering: needs --publish") == true)
        #expect(result.line("resume")?.hasPrefix("skip  resume: needs --publish") == true)
    }

    @Test("unreachable hubs and other schemes get a clear answer")
    func unreachable() throws {
        let ftp = try doctor(["ftp://127.0.0.1:9/events/x"])
        #expect(ftp.status != 0)
        #expect(ftp.err.contains("is not an http:// or https:// URL"))
        let port = try freePort()
        let refused = try doctor(["http://127.0.0.1:\(port)/events/x"])
        #expect(refused.status == 1)
        #expect(refused.line("connect")?.hasPrefix("FAIL  connect: cannot connect to 127.0.0.1:\(port)") == true)
    }
}
