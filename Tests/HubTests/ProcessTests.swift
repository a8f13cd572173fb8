import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Reads one line from `fd` (a pipe), waiting at most until `deadline`.
private func readLine(_ fd: Int32, deadline: Double) -> String? {
    var line: [UInt8] = []
    while now() < deadline {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 100) > 0 else { continue }
        var byte: UInt8 = 0
        guard read(fd, &byte, 1) == 1 else { return nil }
        if byte == 10 { return String(decoding: line, as: UTF8.self) }
        line.append(byte)
    }
    return nil
}

/// Waits for `process` to exit; false if it is still running at the deadline.
private func waitForExit(_ process: Process, timeout: Double) -> Bool {
    eventually(timeout: timeout) { !process.isRunning }
}

/// Runs `openssl` with `arguments`; throws unless it exits 0.
private func openssl(_ arguments: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["openssl"] + arguments
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw TestClientError("openssl \(arguments[0]) failed") }
}

@Suite("Hub over TLS, and the microsse serve process")
struct ProcessTests {
    @Test("HTTPS: a stream over TLS with a self-signed certificate made in the test")
    func tlsStream() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("microsse-tls-\(getpid())-\(now())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cert = dir.appendingPathComponent("cert.pem").path
        let key = dir.appendingPathComponent("key.pem").path
        try openssl([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ])
        let tls = try ServerConfiguration.TLS(certificateFile: cert, privateKeyFile: key)
        #expect(tls.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----"))
        let hub = try makeHub {
            $0.tls = tls
            $0.heartbeatSeconds = 1  // heartbeats on a TLS stream take the content reader's path
        }
        defer { hub.stop() }

        // curl checks the certificate against the one we made, and reads the stream until the
        // server ends it; its exit status says whether the chunked body ended cleanly.
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        curl.arguments = [
            "curl", "-sS", "-N", "--cacert", cert, "-H", "Accept: text/event-stream", "--max-time", "20",
            "https://127.0.0.1:\(hub.port)/events/secure",
        ]
        let out = Pipe()
        curl.standardOutput = out
        curl.standardError = FileHandle.nullDevice
        try curl.run()
        #expect(waitForClients(hub, 1, timeout: 10))
        // Two heartbeats (3 bytes each) while idle: written as TLS records, not raw to the socket.
        #expect(eventually(timeout: 10) { hub.statistics.bytes >= 6 })
        let ids = try (0..<3).map { try hub.publish("secret \($0)", to: "secure") }
        #expect(eventually(timeout: 10) { hub.statistics.delivered == 3 })
        hub.stop()
        try #require(waitForExit(curl, timeout: 30))
        #expect(curl.terminationStatus == 0)
        var parser = EventStreamParser()
        let events = parser.feed(out.fileHandleForReading.readDataToEndOfFile())
        #expect(events.map(\.data) == ["secret 0", "secret 1", "secret 2"])
        #expect(events.map(\.id) == ids)

        // Plain HTTP to the TLS port is not served.
        let plain = try? httpRequest(port: hub.port, path: "/healthz", timeout: 1)
        #expect(plain?.status != 200)
    }

    @Test("TLS files that cannot be read or are not PEM give a one-line invalidArgument")
    func tlsFileErrors() throws {
        #expect(throws: MicroSSEError.self) {
            try ServerConfiguration.TLS(certificateFile: "/nonexistent/cert.pem", privateKeyFile: "/nonexistent/key")
        }
        do {
            _ = try ServerConfiguration.TLS(certificateFile: "/proc/self/status", privateKeyFile: "/proc/self/status")
            Issue.record("a non-PEM file was accepted")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(!error.message.contains("\n"))
        }
    }

    @Test(
        "microsse serve stops cleanly on SIGINT and SIGTERM: exit 0, every stream ends with the final chunk",
        arguments: [SIGINT, SIGTERM])
    func serveStopsOnSignal(_ signal: Int32) throws {
        let executable = try #require(microsseExecutable(), "build the microsse executable first (swift build)")
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: executable)
        serve.arguments = [
            "serve", "--host", "127.0.0.1", "--port", "0", "--publish-token", "t0ken", "--history", "50",
        ]
        let out = Pipe()
        serve.standardOutput = out
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer { if serve.isRunning { serve.terminate() } }
        let line = try #require(readLine(out.fileHandleForReading.fileDescriptor, deadline: now() + 10))
        // "Hub on http://127.0.0.1:PORT/events/{channel}"
        let portText = try #require(line.split(separator: ":").last?.split(separator: "/").first)
        let port = try #require(UInt16(portText))

        var streams: [EventStreamClient] = []
        for i in 0..<5 {
            let c = try EventStreamClient(port: port, path: i % 2 == 0 ? "/events/a" : "/events?channel=a&channel=b")
            #expect(c.status == 200)
            streams.append(c)
        }
        let refused = try httpRequest(port: port, method: "POST", path: "/events/a", body: Array("x".utf8))
        #expect(refused.status == 401)
        for i in 0..<3 {
            let r = try httpRequest(
                port: port, method: "POST", path: "/events/a", headers: [("Authorization", "Bearer t0ken")],
                body: Array("event \(i)".utf8))
            #expect(r.status == 202)
        }
        for c in streams { #expect(try c.events(3).map(\.data) == ["event 0", "event 1", "event 2"]) }

        kill(serve.processIdentifier, signal)
        // Generous: `make test` runs valgrind and thousand-connection tests next to this one.
        try #require(waitForExit(serve, timeout: 30))
        #expect(serve.terminationReason == .exit)
        #expect(serve.terminationStatus == 0)
        for c in streams { #expect(try c.waitForEnd(timeout: 5), "a stream did not end with the final chunk") }
    }

    @Test("stopping a hub with many open streams, some with output pending, ends every stream cleanly")
    func shutdownWithManyStreams() throws {
        let hub = try makeHub { $0.heartbeatSeconds = 1 }
        var streams: [EventStreamClient] = []
        for i in 0..<200 {
            streams.append(try subscribe(hub, "/events/ch\(i % 10)"))
        }
        #expect(waitForClients(hub, 200))
        for i in 0..<10 { try hub.publish("last words \(i)", to: "ch\(i)") }
        hub.stop()
        for (i, c) in streams.enumerated() {
            #expect(try c.waitForEnd(timeout: 10), "stream \(i) did not end cleanly")
            #expect(c.pending.map(\.data) == ["last words \(i % 10)"])
        }
        #expect(hub.statistics.clients == 0)
        #expect(throws: MicroSSEError.self) { try hub.publish("too late", to: "ch0") }
    }
}
