// Two surfaces of the hub: event names a browser's EventSource treats as its own (`error`,
// `open`) are refused to publishers like MicroSSE's own `microsse.*`; and `/stats` and
// `/metrics` can be kept to holders of a token, while staying public by default.
import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Reserved event names and private statistics")
struct SurfaceTests {
    @Test("POST with event=error or event=open: 400 with the reason; message and other names: 202")
    func browserNamesOverHTTP() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let stream = try subscribe(hub, "/events/names")
        #expect(waitForClients(hub, 1))
        for name in ["error", "open"] {
            let r = try post(hub, "names", "x", query: "event=\(name)")
            #expect(r.status == 400, "\(name): \(r.status) \(r.text)")
            #expect(r.text.contains("event name \(name) is reserved"), "\(r.text)")
        }
        for name in ["message", "Error", "opened", "update"] {
            #expect(try post(hub, "names", name, query: "event=\(name)").status == 202, "\(name)")
        }
        // The subscriber saw exactly the accepted ones, in order: no `error` reached it.
        let events = try stream.events(4)
        #expect(events.map(\.type) == ["message", "Error", "opened", "update"])
        #expect(hub.statistics.published == 4)
    }

    @Test("Swift publish of error or open throws invalidEventName; message is published")
    func browserNamesInSwift() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        for name in ["error", "open", "microsse.gap"] {
            #expect(throws: MicroSSEError.self) { _ = try hub.publish("x", event: name, to: "c") }
            do {
                _ = try hub.publish("x", event: name, to: "c")
            } catch {
                #expect(error.code == .invalidEventName)
                #expect(error.message.contains("reserved"), "\(error.message)")
            }
        }
        #expect(!(try hub.publish("x", event: "message", to: "c")).isEmpty)
    }

    @Test("by default /stats and /metrics answer anyone")
    func publicByDefault() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        #expect(try httpRequest(port: hub.port, path: "/stats").status == 200)
        #expect(try httpRequest(port: hub.port, path: "/metrics").status == 200)
    }

    @Test("with statsToken: 401 without it or with another, 200 with it; /healthz and /readyz stay open")
    func privateWithToken() throws {
        let hub = try makeHub { $0.statsToken = "st4ts-token" }
        defer { hub.stop() }
        for path in ["/stats", "/metrics"] {
            let none = try httpRequest(port: hub.port, path: path)
            #expect(none.status == 401, "\(path)")
            #expect(none.header("WWW-Authenticate") == "Bearer")
            #expect(none.text.contains("\(path) needs Authorization: Bearer"), "\(none.text)")
            let wrong = try httpRequest(port: hub.port, path: path, headers: [("Authorization", "Bearer st4ts-tokem")])
            #expect(wrong.status == 401, "\(path)")
            let longer = try httpRequest(
                port: hub.port, path: path, headers: [("Authorization", "Bearer st4ts-token2")])
            #expect(longer.status == 401, "\(path)")
            let right = try httpRequest(port: hub.port, path: path, headers: [("Authorization", "Bearer st4ts-token")])
            #expect(right.status == 200, "\(path)")
        }
        let stats = try httpRequest(
            port: hub.port, path: "/stats", headers: [("Authorization", "Bearer st4ts-token")])
        #expect(stats.text.contains("\"clients\""))
        #expect(try httpRequest(port: hub.port, path: "/healthz").status == 200)
        #expect(try httpRequest(port: hub.port, path: "/readyz").status == 200)
        // Publishing is not guarded by the stats token.
        #expect(try post(hub, "c", "x").status == 202)
    }

    @Test("statsToken is validated like publishToken")
    func tokenValidated() throws {
        for bad in ["", "two words", "tab\there"] {
            var config = ServerConfiguration()
            config.statsToken = bad
            #expect(throws: MicroSSEError.self, "\(bad)") { try config.validate() }
        }
    }

    @Test("microsse serve --stats-token-file: /stats needs the token; without the flag it is public")
    func serveFlag() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stats-token-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("token").path
        try "from-a-file\n".write(toFile: file, atomically: true, encoding: .utf8)
        let hub = try ServerProcess(["serve", "--port", "0", "--stats-token-file", file])
        #expect(try httpRequest(port: hub.port, path: "/stats").status == 401)
        #expect(try httpRequest(port: hub.port, path: "/metrics").status == 401)
        let ok = try httpRequest(port: hub.port, path: "/metrics", headers: [("Authorization", "Bearer from-a-file")])
        #expect(ok.status == 200)
        let open = try ServerProcess(["serve", "--port", "0"])
        #expect(try httpRequest(port: open.port, path: "/stats").status == 200)
        let both = try runToExit(["serve", "--port", "0", "--stats-token", "a", "--stats-token-file", file])
        #expect(both.status != 0)
        #expect(both.stderr.contains("give --stats-token or --stats-token-file, not both"))
        // MICROSSE_STATS_TOKEN reaches the same validation (a token with a space is refused).
        let p = Process()
        p.executableURL = URL(fileURLWithPath: microsseExecutable())
        p.arguments = ["serve", "--port", "0"]
        p.environment = ProcessInfo.processInfo.environment.merging(["MICROSSE_STATS_TOKEN": "two words"]) { $1 }
        let errors = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = errors
        try p.run()
        let exited = eventually(timeout: 30) { !p.isRunning }
        if !exited { p.terminate() }
        p.waitUntilExit()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(exited && p.terminationStatus != 0)
        #expect(text.contains("statsToken must be non-empty visible ASCII"), "\(text)")
    }
}
