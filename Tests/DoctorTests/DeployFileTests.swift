// The shipped deploy files are valid: the systemd unit (systemd-analyze), the nginx configs
// (nginx -t, and a real TLS + HTTP/2 stream through nginx.conf), and `make install`'s binary.
import Foundation
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The `location /events { ... }` block of a config, up to its closing brace.
private func eventsLocation(_ config: String) throws -> Substring {
    let start = try #require(config.range(of: "    location /events {"))
    let end = try #require(config[start.upperBound...].range(of: "\n    }\n"))
    return config[start.lowerBound..<end.upperBound]
}

extension DoctorTests {
    @Suite("Deploy files")
    struct DeployFileTests {
        // systemd-analyze (Debian's systemd package, installed by make test-deps) checks the unit
        // offline: directives, values, and that ExecStart's binary exists, so it points at the build.
        @Test("microsse.service passes systemd-analyze verify and its sandbox rates OK")
        func systemdUnit() throws {
            let analyze = try #require(
                toolPath("systemd-analyze"), "systemd-analyze is not installed (make test-deps installs systemd)")
            let dir = try temporaryDirectory("unit")
            defer { try? FileManager.default.removeItem(at: dir) }
            let unit = try replacing(
                deployFile("microsse.service"), [("/usr/local/bin/microsse", microsseExecutable())])
            let path = dir.appendingPathComponent("microsse.service").path
            try unit.write(toFile: path, atomically: true, encoding: .utf8)
            let verify = try run(analyze, ["verify", path])
            #expect(verify.status == 0, "\(verify.out)\(verify.err)")
            #expect(!verify.err.contains("microsse.service"), "\(verify.err)")
            let security = try run(analyze, ["security", "--offline=yes", path])
            #expect(security.status == 0, "\(security.err)")
            #expect(security.out.contains("Overall exposure level for microsse.service: 1."), "\(security.out)")
            for line in [
                "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet=\n", "LimitNOFILE=65536",
                "Restart=on-failure", "KillSignal=SIGTERM", "TimeoutStopSec=30",
            ] {
                #expect(unit.contains(line), "\(line)")
            }
        }

        @Test("nginx.conf (TLS, HTTP/2) and nginx-http.conf pass nginx -t; their /events blocks are identical")
        func nginxConfigsAreValid() throws {
            let dir = try temporaryDirectory("certs")
            defer { try? FileManager.default.removeItem(at: dir) }
            let (cert, key) = try selfSignedCertificate(in: dir)
            for site in [try tlsSite(cert: cert, key: key), try deployFile("nginx-http.conf")] {
                let check = try Nginx.check(site: site)
                #expect(check.status == 0, "\(check.err)")
                #expect(check.err.contains("test is successful"), "\(check.err)")
            }
            let tls = try deployFile("nginx.conf")
            #expect(tls.contains("listen 443 ssl http2;"))
            #expect(try eventsLocation(tls) == eventsLocation(try deployFile("nginx-http.conf")))
            for directive in [
                "proxy_buffering off;", "proxy_cache off;", "proxy_http_version 1.1;",
                "proxy_set_header Connection '';",
                "proxy_read_timeout 1h;", "gzip off;", "proxy_set_header Last-Event-ID $http_last_event_id;",
                "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            ] {
                #expect(try eventsLocation(tls).contains(directive), "\(directive)")
            }
        }

        @Test("nginx.conf serves a stream over TLS and HTTP/2 as events are published")
        func tlsAndHTTP2() throws {
            let curl = try #require(toolPath("curl"), "curl is not installed (make test-deps installs it)")
            let dir = try temporaryDirectory("tls")
            defer { try? FileManager.default.removeItem(at: dir) }
            let (cert, key) = try selfSignedCertificate(in: dir)
            let hub = try ServerProcess(["serve", "--port", "0", "--heartbeat", "1"])
            let port = try freePort()
            let site = try tlsSite(
                cert: cert, key: key,
                [
                    ("    listen 80;\n    listen [::]:80;\n", "    listen 127.0.0.1:\(try freePort());\n"),
                    (
                        "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n",
                        "    listen 127.0.0.1:\(port) ssl http2;\n"
                    ),
                    ("server 127.0.0.1:8080;", "server 127.0.0.1:\(hub.port);"),
                ])
            let nginx = try Nginx(site: site, port: port)
            // curl stays connected until --max-time; the event is published once the stream is open.
            let out = dir.appendingPathComponent("curl.out")
            let err = dir.appendingPathComponent("curl.err")
            _ = FileManager.default.createFile(atPath: out.path, contents: nil)
            _ = FileManager.default.createFile(atPath: err.path, contents: nil)
            let client = Process()
            client.executableURL = URL(fileURLWithPath: curl)
            client.arguments = [
                "-svN", "--http2", "--cacert", cert, "--max-time", "20", "https://127.0.0.1:\(port)/events/tls",
            ]
            client.standardOutput = try FileHandle(forWritingTo: out)
            client.standardError = try FileHandle(forWritingTo: err)
            try client.run()
            defer {
                kill(client.processIdentifier, SIGKILL)
                client.waitUntilExit()
            }
            let read = { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
            #expect(eventually(timeout: 10) { read().contains(":\n") }, "no heartbeat through nginx: \(nginx.errorLog)")
            let published = try httpRequest(
                port: hub.port, method: "POST", path: "/events/tls", body: Array("over h2".utf8))
            #expect(published.status == 202)
            #expect(eventually(timeout: 5) { read().contains("data: over h2\n\n") }, "\(read())")
            let verbose = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
            #expect(verbose.contains("< HTTP/2 200"), "\(verbose)")
        }

        @Test("scripts/install-c.sh (make install) installs bin/microsse beside the C library")
        func installBinary() throws {
            let prefix = try temporaryDirectory("prefix")
            defer { try? FileManager.default.removeItem(at: prefix) }
            let build = URL(fileURLWithPath: microsseExecutable()).deletingLastPathComponent().path
            let install = try run("/bin/bash", [packageRoot + "/scripts/install-c.sh", prefix.path, build])
            try #require(install.status == 0, "\(install.err)")
            #expect(FileManager.default.fileExists(atPath: prefix.path + "/lib/libmicrosse.so"))
            let binary = prefix.path + "/bin/microsse"
            #expect(FileManager.default.isExecutableFile(atPath: binary))
            let help = try run(binary, ["doctor", "--help"])
            #expect(help.status == 0)
            #expect(help.out.contains("--publish"))
        }
    }
}
