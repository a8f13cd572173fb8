// `microsse doctor` over TLS: https:// URLs through a real nginx running the shipped TLS +
// HTTP/2 config (Examples/deploy/nginx.conf) with a self-signed certificate made by openssl.
import Foundation
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A self-signed certificate and key for localhost and 127.0.0.1, made with openssl in `dir`.
func selfSignedCertificate(in dir: URL) throws -> (cert: String, key: String) {
    let openssl = try #require(toolPath("openssl"), "openssl is not installed (make test-deps installs it)")
    let cert = dir.appendingPathComponent("cert.pem").path
    let key = dir.appendingPathComponent("key.pem").path
    let made = try run(
        openssl,
        [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
    try #require(made.status == 0, "\(made.err)")
    return (cert, key)
}

/// The TLS config with the test's certificate.
func tlsSite(cert: String, key: String, _ edits: [(String, String)] = []) throws -> String {
    try replacing(
        deployFile("nginx.conf"),
        [
            ("/etc/ssl/certs/events.example.com.pem", cert),
            ("/etc/ssl/private/events.example.com.key", key),
        ] + edits)
}

/// The shipped TLS config on loopback ports in front of `hub` (HTTP/2 on unless `http2` is false).
private func tlsNginx(of hub: ServerProcess, cert: String, key: String, http2: Bool = true) throws -> Nginx {
    var lastError: Error?
    for _ in 0..<3 {
        let port = try freePort()
        do {
            let site = try tlsSite(
                cert: cert, key: key,
                [
                    ("    listen 80;\n    listen [::]:80;\n", "    listen 127.0.0.1:\(try freePort());\n"),
                    (
                        "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n",
                        "    listen 127.0.0.1:\(port) ssl\(http2 ? " http2" : "");\n"
                    ),
                    ("server 127.0.0.1:8080;", "server 127.0.0.1:\(hub.port);"),
                ])
            return try Nginx(site: site, port: port)
        } catch {
            lastError = error
        }
    }
    throw lastError!
}

extension DoctorTests {
    @Suite("Over TLS")
    struct TLSTests {
        @Test("https through nginx.conf with --ca-file: TLS verified, h2 offered, every check ok, exit 0")
        func verifiedWithCAFile() throws {
            let dir = try temporaryDirectory("tls-ca")
            defer { try? FileManager.default.removeItem(at: dir) }
            let (cert, key) = try selfSignedCertificate(in: dir)
            let hub = try ServerProcess(["serve", "--port", "0", "--heartbeat", "1", "--publish-token", "s3cret"])
            let nginx = try tlsNginx(of: hub, cert: cert, key: key)
            let url = "https://127.0.0.1:\(nginx.port)/events/doctor-probe"
            let result = try doctor([url, "--publish", url, "--token", "s3cret", "--ca-file", cert, "--idle", "2"])
            #expect(result.status == 0, "\(nginx.errorLog)")
            #expect(!result.out.contains("FAIL") && !result.out.contains("warn"))
            #expect(result.line("tls")?.hasPrefix("ok    tls: TLS1.3, certificate verified for 127.0.0.1") == true)
            #expect(
                result.line("http version")?.hasPrefix(
                    "ok    http version: HTTP/1.1 between you and the first hop over TLS1.3, ALPN http/1.1") == true)
            #expect(result.line("http/2") == "ok    http/2: offered by the server (browsers share one connection)")
            for check in ["publish", "buffering", "idle", "resume"] {
                #expect(result.line(check)?.hasPrefix("ok    \(check): ") == true, "\(check)")
            }
            // A host name: SNI and the name checked against the certificate's DNS name.
            let byName = try doctor([
                "https://localhost:\(nginx.port)/events/doctor-probe", "--ca-file", cert, "--heartbeat-wait", "3",
            ])
            #expect(byName.status == 0)
            #expect(byName.line("tls")?.hasPrefix("ok    tls: TLS1.3, certificate verified for localhost") == true)
        }

        @Test("--insecure accepts the self-signed certificate and says so; no h2 is a warning")
        func insecureWithoutHTTP2() throws {
            let dir = try temporaryDirectory("tls-insecure")
            defer { try? FileManager.default.removeItem(at: dir) }
            let (cert, key) = try selfSignedCertificate(in: dir)
            let hub = try ServerProcess(["serve", "--port", "0", "--heartbeat", "1"])
            let nginx = try tlsNginx(of: hub, cert: cert, key: key, http2: false)
            let url = "https://127.0.0.1:\(nginx.port)/events/doctor-probe"
            let result = try doctor([url, "--publish", url, "--insecure"])
            #expect(result.status == 0, "\(nginx.errorLog)")
            let tls = try #require(result.line("tls"))
            #expect(tls.hasPrefix("warn  tls: TLS1.3, certificate NOT verified (--insecure)"), "\(tls)")
            #expect(
                result.line("http/2") == "warn  http/2: not offered: browsers are limited to 6 streams per origin")
            #expect(result.line("buffering")?.hasPrefix("ok    buffering: ") == true)
        }

        @Test("a self-signed certificate without --ca-file or --insecure: FAIL tls, exit 1, promptly")
        func untrustedCertificate() throws {
            let dir = try temporaryDirectory("tls-untrusted")
            defer { try? FileManager.default.removeItem(at: dir) }
            let (cert, key) = try selfSignedCertificate(in: dir)
            let hub = try ServerProcess(["serve", "--port", "0", "--heartbeat", "1"])
            let nginx = try tlsNginx(of: hub, cert: cert, key: key)
            let started = now()
            let result = try doctor(["https://127.0.0.1:\(nginx.port)/events/doctor-probe"], timeout: 30)
            #expect(now() - started < 15)
            #expect(result.status == 1)
            let tls = try #require(result.line("tls"))
            #expect(tls.hasPrefix("FAIL  tls: certificate verification failed for 127.0.0.1: "), "\(tls)")
            #expect(tls.contains("--ca-file"), "\(tls)")
            // Trusting another certificate (with the same names) does not help.
            let otherDir = try temporaryDirectory("tls-other")
            defer { try? FileManager.default.removeItem(at: otherDir) }
            let other = try selfSignedCertificate(in: otherDir)
            let wrong = try doctor(["https://127.0.0.1:\(nginx.port)/events/x", "--ca-file", other.cert])
            #expect(wrong.status == 1)
            #expect(wrong.line("tls")?.hasPrefix("FAIL  tls: certificate verification failed") == true)
            let missing = try doctor(["https://127.0.0.1:\(nginx.port)/events/x", "--ca-file", dir.path + "/none"])
            #expect(missing.status != 0)
            #expect(missing.err.contains("--ca-file"))
        }

        @Test("https to a plain-HTTP port: FAIL tls, no hang")
        func httpsToPlainPort() throws {
            let hub = try ServerProcess(["serve", "--port", "0", "--heartbeat", "1"])
            let started = now()
            let result = try doctor(["https://127.0.0.1:\(hub.port)/events/x"], timeout: 30)
            #expect(now() - started < 15)
            #expect(result.status == 1)
            #expect(result.line("tls")?.hasPrefix("FAIL  tls: TLS handshake failed: ") == true)
        }
    }
}

extension DoctorTests.TLSTests {
    @Test("a server that accepts but never answers the handshake: FAIL tls after the timeout, no hang")
    func silentServer() throws {
        let (fd, port) = try ephemeralSocket(backlog: 4)
        defer { close(fd) }
        let started = now()
        let result = try doctor(["https://127.0.0.1:\(port)/events/x"], timeout: 30)
        #expect(now() - started < 20)
        #expect(result.status == 1)
        #expect(result.line("tls") == "FAIL  tls: TLS handshake timed out")
    }
}
