import Foundation
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("service lifecycle, and microsse serve configured from the environment")
struct EcosystemProcessTests {
    @Test("Examples/swift/service-group: SIGTERM ends every stream with its final chunk, exit 0")
    func serviceGroupSigterm() throws {
        let port = try freePort()
        let example = try Launched("service-group", [String(port)])
        #expect(waitUntilServing(port))
        let stream = try EventStreamClient(port: port, path: "/events/news")
        #expect(stream.status == 200)
        example.signal(SIGTERM)
        #expect(try stream.waitForEnd(), "stream did not end with the final chunk on SIGTERM")
        #expect(stream.endedCleanly)
        #expect(example.waitForExit() == 0)
        #expect(example.text.contains("stopped"))
    }

    @Test("MICROSSE_PORT and MICROSSE_PUBLISH_TOKEN alone configure serve; the token stays out of cmdline")
    func environmentOnly() throws {
        let port = try freePort()
        let token = "env-token-\(getpid())"
        let hub = try Launched(
            "microsse", ["serve"], environment: ["MICROSSE_PORT": String(port), "MICROSSE_PUBLISH_TOKEN": token])
        #expect(waitUntilServing(port))
        #expect(try httpRequest(port: port, method: "POST", path: "/events/a", body: Array("x".utf8)).status == 401)
        let allowed = try httpRequest(
            port: port, method: "POST", path: "/events/a", headers: [("Authorization", "Bearer \(token)")],
            body: Array("x".utf8))
        #expect(allowed.status == 202)
        let cmdline = try String(contentsOfFile: "/proc/\(hub.pid)/cmdline", encoding: .utf8)
        #expect(!cmdline.contains(token))
        #expect(!hub.text.contains(token))
        hub.signal(SIGTERM)
        #expect(hub.waitForExit() == 0)
        #expect(!hub.text.contains(token))
    }

    @Test("a flag beats its variable; repeatable variables are comma-separated; flags as 1")
    func flagWins() throws {
        let port = try freePort()
        let hub = try Launched(
            "microsse", ["serve", "--port", String(port), "--heartbeat", "1"],
            environment: [
                "MICROSSE_PORT": "not-a-port", "MICROSSE_CORS_ORIGIN": "http://a.test,http://b.test",
                "MICROSSE_ACCESS_LOG": "1",
            ])
        #expect(waitUntilServing(port))
        let stream = try EventStreamClient(
            port: port, path: "/events/news?authorization=s3cret", headers: [("Origin", "http://b.test")])
        #expect(stream.head.header("Access-Control-Allow-Origin") == "http://b.test")
        stream.close()
        // The stream's line comes when its end is noticed (the heartbeat's write, or at once).
        #expect(eventually(timeout: 10) { hub.text.contains("path=/events/news?authorization=[redacted] status=200") })
        #expect(!hub.text.contains("s3cret"))
        hub.signal(SIGINT)
        #expect(hub.waitForExit() == 0)
    }

    @Test("--publish-token-file and MICROSSE_PUBLISH_TOKEN_FILE read the token, without its newline")
    func tokenFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("microsse-token-\(getpid())").path
        let token = "file-token-\(getpid())"
        try (token + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        for (arguments, environment) in [
            (["--publish-token-file", path], [:]), ([], ["MICROSSE_PUBLISH_TOKEN_FILE": path]),
            (["--publish-token-file", path], ["MICROSSE_PUBLISH_TOKEN": "loses"]),
        ] {
            let port = try freePort()
            let hub = try Launched(
                "microsse", ["serve", "--port", String(port)] + arguments, environment: environment)
            #expect(waitUntilServing(port))
            let allowed = try httpRequest(
                port: port, method: "POST", path: "/events/a", headers: [("Authorization", "Bearer \(token)")],
                body: Array("x".utf8))
            #expect(allowed.status == 202, "\(arguments) \(environment)")
            let cmdline = try String(contentsOfFile: "/proc/\(hub.pid)/cmdline", encoding: .utf8)
            #expect(!cmdline.contains(token))
            hub.signal(SIGTERM)
            #expect(hub.waitForExit() == 0)
            #expect(!hub.text.contains(token))
        }
    }

    @Test("an unreadable token file is refused at start, naming the file only")
    func missingTokenFile() throws {
        let hub = try Launched("microsse", ["serve", "--port", "0", "--publish-token-file", "/nonexistent/token"])
        #expect(hub.waitForExit() != 0)
        #expect(hub.text.contains("/nonexistent/token"))
    }
}
