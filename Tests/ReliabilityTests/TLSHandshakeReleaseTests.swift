import MicroSSE
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Whether the long scenarios run (`make test-long` sets MICROSSE_LONG_TESTS=1).
let longTestsEnabled = getenv("MICROSSE_LONG_TESTS").map { String(cString: $0) == "1" } ?? false

/// A TLS connection that never completes its handshake must be released by the server, not only
/// cut on the client's side: libmicrohttpd 0.9.75's own timeout marks such a connection closed
/// but never cleans it up (its descriptor stays open for the daemon's life and its polling loop
/// spins), so the request deadline has to end it first.
@Suite("TLS: unfinished handshakes are released at the connection timeout")
struct TLSHandshakeReleaseTests {
    @Test("silent and half-sent TLS handshakes leave the server holding no connection after the timeout")
    func unfinishedHandshakesAreReleased() throws {
        let tls = try HardeningTransportTests.selfSignedTLS()
        let server = try makeServer {
            $0.tls = tls
            $0.connectionTimeoutSeconds = 2
        }
        defer { server.stop() }
        let transport = try #require(server.transport)
        var clients: [RawConnection] = []
        for _ in 0..<5 { clients.append(try RawConnection(port: server.port)) }
        let partial = try RawConnection(port: server.port)
        try partial.send([0x16, 0x03, 0x01, 0x00, 0xF0, 0x01])  // the start of a ClientHello
        clients.append(partial)
        #expect(eventually(timeout: 10) { transport.openConnections == clients.count }, "accepted")
        for client in clients { #expect(try client.waitForClose(timeout: 20)) }
        // The clients saw their connection end; the server must have let go of it too.
        #expect(
            eventually(timeout: 20) { transport.openConnections == 0 },
            "the server still holds \(transport.openConnections) connections")
        // And it still serves TLS.
        let served = eventually(timeout: 10) {
            system("curl -sk --max-time 5 -o /dev/null https://127.0.0.1:\(server.port)/healthz") == 0
        }
        #expect(served)
    }

    @Test(
        "at the shipped defaults, 40 silent TLS connections to the real binary are released (long)",
        .enabled(if: longTestsEnabled, "MICROSSE_LONG_TESTS=1 (make test-long): waits for the 30 s default"))
    func silentConnectionsReleasedAtDefaults() throws {
        let dir = try CertificateDirectory()
        let hub = try ServerProcess([
            "serve", "--host", "127.0.0.1", "--port", "0", "--tls-cert", dir.certificate, "--tls-key", dir.key,
        ])
        let pid = hub.process.processIdentifier
        let before = openFiles(of: pid)
        var clients: [RawConnection] = []
        for _ in 0..<40 { clients.append(try RawConnection(port: hub.port)) }
        #expect(eventually(timeout: 10) { openFiles(of: pid) >= before + 40 }, "accepted")
        // Well past the 30 s default; the old library kept them for the process's life.
        #expect(
            eventually(timeout: 75) { openFiles(of: pid) <= before },
            "the server holds \(openFiles(of: pid) - before) more descriptors than before")
        for client in clients { #expect(try client.waitForClose(timeout: 5)) }
        hub.signal(SIGTERM)
        #expect(hub.waitForExit(timeout: 10) == 0)
    }
}

/// Open descriptors of process `pid` (from /proc).
func openFiles(of pid: Int32) -> Int {
    guard let dir = opendir("/proc/\(pid)/fd") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while readdir(dir) != nil { n += 1 }
    return n - 2
}

/// A self-signed certificate and key in a temporary directory, removed on deinit.
final class CertificateDirectory {
    let path: String
    var certificate: String { path + "/cert.pem" }
    var key: String { path + "/key.pem" }

    init() throws {
        var template = Array("/tmp/microsse-tls-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template).map({ String(cString: $0) }) else {
            throw TestClientError("mkdtemp failed: errno \(errno)")
        }
        path = dir
        let command =
            "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 "
            + "-keyout \(dir)/key.pem -out \(dir)/cert.pem >/dev/null 2>&1"
        guard system(command) == 0 else { throw TestClientError("openssl could not make a certificate") }
    }

    deinit {
        unlink(certificate)
        unlink(key)
        rmdir(path)
    }
}
