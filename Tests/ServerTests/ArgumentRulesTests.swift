import Foundation
import MicroSSE
import MicroSSETestSupport
import Synchronization
import Testing

/// Each rule on an argument is the Swift API's (the C shell only converts and maps its errors).
@Suite("Argument rules")
struct ArgumentRulesTests {
    @Test("a route path that does not start with / is refused")
    func routePaths() throws {
        let server = try makeServer()
        defer { server.stop() }
        for path in ["talk", "", "events/x"] {
            #expect(throws: MicroSSEError(.invalidArgument, "route path must start with '/': \(path.debugDescription)"))
            {
                try server.addRoute("GET", path) { _ in .text("x") }
            }
            #expect(throws: MicroSSEError(.invalidArgument, "route path must start with '/': \(path.debugDescription)"))
            {
                try server.addStreamRoute(path) { _, _ in }
            }
        }
        try server.addRoute("GET", "/fine") { _ in .text("fine") }
        #expect(try httpRequest(port: server.port, path: "/fine").text == "fine\n")
    }

    @Test("a response status outside 100-599 becomes a 500 that says so, never a clamped status")
    func responseStatus() throws {
        let server = try makeServer()
        defer { server.stop() }
        for status in [42, 600, 1_000, -1] {
            try server.addRoute("GET", "/s\(status)") { _ in Response(status: status) }
            let r = try httpRequest(port: server.port, path: "/s\(status)")
            #expect(r.status == 500, "status \(status)")
            #expect(r.text == "the server built an invalid response status\n", "status \(status)")
        }
        #expect(throws: MicroSSEError(.invalidArgument, "status must be 100-599 (got 99)")) {
            try Response.validateStatus(99)
        }
    }

    @Test("a private send obeys the publish's rules: the size limit and reserved event names")
    func privateSendRules() throws {
        let server = try makeServer { $0.maxPublishBytes = 8 }
        defer { server.stop() }
        let opened = Mutex<Client?>(nil)
        try server.addStreamRoute("/me") { _, client in opened.withLock { $0 = client } }
        let stream = try EventStreamClient(port: server.port, path: "/me")
        #expect(eventually { opened.withLock { $0 } != nil })
        let client = try #require(opened.withLock { $0 })
        #expect(throws: MicroSSEError(.payloadTooLarge, "event data is larger than 8 bytes")) {
            try client.send(Event(data: "123456789"))
        }
        for name in ["microsse.gap", "microsse.expired"] {
            #expect(
                throws: MicroSSEError(.invalidEventName, "event name \(name) is reserved for MicroSSE's own events")
            ) {
                try client.send(Event(data: "{}", event: name))
            }
        }
        #expect(try client.send(Event(data: "12345678")))
        // The refused events were never queued: the first event the stream carries is the last one.
        let first = try #require(try stream.next())
        #expect(first.data == "12345678")
    }

    @Test("PEM files are read by one routine: the same code and reasons for TLS files and JWT keys")
    func pemFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "pem-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = dir.appendingPathComponent("text.pem").path
        try "not a key\n".write(toFile: text, atomically: true, encoding: .utf8)
        let big = dir.appendingPathComponent("big.pem").path
        try ("-----BEGIN PUBLIC KEY-----\n" + String(repeating: "A", count: 70_000)).write(
            toFile: big, atomically: true, encoding: .utf8)
        let missing = dir.appendingPathComponent("missing.pem").path

        #expect(throws: MicroSSEError(.invalidArgument, "TLS certificate \(text) is not a PEM file")) {
            try ServerConfiguration.TLS(certificateFile: text, privateKeyFile: text)
        }
        #expect(throws: MicroSSEError(.invalidArgument, "JWT key \(text) is not a PEM file")) {
            try JWTSettings(publicKeyFile: text)
        }
        #expect(throws: MicroSSEError(.invalidArgument, "JWT key \(big) is larger than 64 KiB")) {
            try JWTSettings(publicKeyFile: big)
        }
        #expect(
            throws: MicroSSEError(.invalidArgument, "cannot read TLS certificate \(missing): No such file or directory")
        ) {
            try ServerConfiguration.TLS(certificateFile: missing, privateKeyFile: missing)
        }
        #expect(throws: MicroSSEError(.invalidArgument, "cannot read JWT key \(missing): No such file or directory")) {
            try JWTSettings(publicKeyFile: missing)
        }
    }
}
