// Real processes for the doctor's tests: the microsse hub, nginx with the shipped deploy
// configs (or a variant of them), and `microsse doctor` itself.
import Foundation
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What a finished process printed, and its exit status.
struct ToolResult {
    var status: Int32
    var out: String
    var err: String
    /// stdout's lines.
    var lines: [String] { out.split(separator: "\n").map(String.init) }
    /// The report line of `check` (e.g. "buffering"), whatever its verdict.
    func line(_ check: String) -> String? {
        lines.first { $0.dropFirst(6).hasPrefix(check + ":") }
    }
}

/// The full path of a tool in PATH or in the sbin directories (where Debian puts nginx).
func toolPath(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let dirs = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/local/sbin"]
    return dirs.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// A fresh directory, removed by the caller.
func temporaryDirectory(_ label: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
        "microsse-doctor-\(label)-\(getpid())-\(UInt64(now() * 1e6))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Runs `executable` with `arguments` to completion; killed (status 137-ish) after `timeout` s.
func run(_ executable: String, _ arguments: [String], timeout: Double = 60) throws -> ToolResult {
    let dir = try temporaryDirectory("run")
    defer { try? FileManager.default.removeItem(at: dir) }
    let outURL = dir.appendingPathComponent("out")
    let errURL = dir.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    p.standardOutput = try FileHandle(forWritingTo: outURL)
    p.standardError = try FileHandle(forWritingTo: errURL)
    try p.run()
    if !eventually(timeout: timeout, { !p.isRunning }) {
        kill(p.processIdentifier, SIGKILL)
    }
    p.waitUntilExit()
    return ToolResult(
        status: p.terminationStatus, out: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
        err: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
}

/// Runs `microsse doctor ARGUMENTS...` and prints its report (so a failing test shows it).
func doctor(_ arguments: [String], timeout: Double = 60) throws -> ToolResult {
    let result = try run(microsseExecutable(), ["doctor"] + arguments, timeout: timeout)
    print(result.out + result.err)
    return result
}

/// A TCP socket bound to an ephemeral port of 127.0.0.1 and listening (`backlog` > 0) or only
/// bound (`backlog` 0); the caller closes `fd`.
func ephemeralSocket(backlog: Int32) throws -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ready = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && (backlog == 0 || listen(fd, backlog) == 0)
                && getsockname(fd, $0, &length) == 0
        }
    }
    guard ready else {
        close(fd)
        throw TestClientError("cannot use an ephemeral port: errno \(errno)")
    }
    return (fd, UInt16(bigEndian: addr.sin_port))
}

/// Accepts on `listener` until it is shut down, handing each connection to `handle` on a thread
/// of its own.
func acceptEach(_ listener: Int32, _ handle: @escaping @Sendable (Int32) -> Void) {
    Thread.detachNewThread {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            Thread.detachNewThread { handle(client) }
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
func freePort() throws -> UInt16 {
    let (fd, port) = try ephemeralSocket(backlog: 0)
    close(fd)
    return port
}

/// A shipped deploy file (Examples/deploy/NAME) as text.
func deployFile(_ name: String) throws -> String {
    try String(contentsOfFile: packageRoot + "/Examples/deploy/" + name, encoding: .utf8)
}

/// `text` with each `(old, new)` replaced; throws when an `old` is missing, so a test never runs
/// a config that silently lost the line it meant to change.
func replacing(_ text: String, _ edits: [(String, String)]) throws -> String {
    var text = text
    for (old, new) in edits {
        guard text.contains(old) else { throw TestClientError("'\(old)' is not in the config") }
        text = text.replacingOccurrences(of: old, with: new)
    }
    return text
}

/// nginx started by the test as an ordinary user: its prefix, pid file, logs and temp paths in
/// a directory of its own, running a site file inside a generated http {} block.
final class Nginx {
    let directory: URL
    let port: UInt16
    private let process = Process()

    /// The main config around `site` (the http-context part: upstream and server blocks).
    static func mainConfig(site: String, in dir: URL) throws -> String {
        let d = dir.path
        try site.write(to: dir.appendingPathComponent("site.conf"), atomically: true, encoding: .utf8)
        return """
            worker_processes 1;
            events { worker_connections 256; }
            http {
                access_log \(d)/access.log;
                client_body_temp_path \(d)/body;
                proxy_temp_path \(d)/proxy;
                fastcgi_temp_path \(d)/fastcgi;
                uwsgi_temp_path \(d)/uwsgi;
                scgi_temp_path \(d)/scgi;
                include \(d)/site.conf;
            }

            """
    }

    /// The arguments that keep nginx inside `dir` (`extra` goes into -g).
    static func arguments(_ dir: URL, extra: String = "") -> [String] {
        let d = dir.path
        return [
            "-e", "\(d)/error.log", "-p", d, "-c", "\(d)/nginx.conf",
            "-g", "\(extra)pid \(d)/nginx.pid; error_log \(d)/error.log;",
        ]
    }

    /// `nginx -t` on `site`; returns nginx's output and status.
    static func check(site: String) throws -> ToolResult {
        let nginx = try #require(toolPath("nginx"), "nginx is not installed (make test-deps installs it)")
        let dir = try temporaryDirectory("nginx-t")
        defer { try? FileManager.default.removeItem(at: dir) }
        try mainConfig(site: site, in: dir).write(
            to: dir.appendingPathComponent("nginx.conf"), atomically: true, encoding: .utf8)
        return try run(nginx, ["-t"] + arguments(dir), timeout: 30)
    }

    /// Starts nginx on `port` with `site` and waits until it accepts connections.
    init(site: String, port: UInt16) throws {
        let nginx = try #require(toolPath("nginx"), "nginx is not installed (make test-deps installs it)")
        self.port = port
        directory = try temporaryDirectory("nginx")
        try Self.mainConfig(site: site, in: directory).write(
            to: directory.appendingPathComponent("nginx.conf"), atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: nginx)
        process.arguments = Self.arguments(directory, extra: "daemon off; ")
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let up = eventually(timeout: 10) {
            !process.isRunning || (try? RawConnection(port: port)) != nil
        }
        guard up, process.isRunning else {
            throw TestClientError("nginx did not start: \(errorLog)")
        }
    }

    var errorLog: String {
        (try? String(contentsOf: directory.appendingPathComponent("error.log"), encoding: .utf8)) ?? ""
    }

    deinit {
        if process.isRunning {
            process.terminate()  // SIGTERM: nginx's fast shutdown
            if !eventually(timeout: 10, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// The plain-HTTP deploy config (Examples/deploy/nginx-http.conf) on `port` in front of the
/// hub on `hubPort`, with `edits` applied on top.
func plainSite(port: UInt16, hubPort: UInt16, _ edits: [(String, String)] = []) throws -> String {
    try replacing(
        deployFile("nginx-http.conf"),
        [("listen 80;", "listen 127.0.0.1:\(port);"), ("server 127.0.0.1:8080;", "server 127.0.0.1:\(hubPort);")]
            + edits)
}

/// A hub and nginx in front of it, with the config made by `site(nginxPort, hubPort)`.
/// Retries with another port when the probed free port was taken in between.
func nginxInFront(of hub: ServerProcess, _ edits: [(String, String)] = []) throws -> Nginx {
    var lastError: Error?
    for _ in 0..<3 {
        let port = try freePort()
        do {
            return try Nginx(site: plainSite(port: port, hubPort: hub.port, edits), port: port)
        } catch {
            lastError = error
        }
    }
    throw lastError!
}

/// A stand-in for a CDN that buffers: it relays each connection to `upstream`, passes the
/// response head on at once, then holds the body and lets it out only every `interval` seconds.
final class BatchingProxy: @unchecked Sendable {
    let port: UInt16
    private let listener: Int32
    private let upstream: UInt16
    private let interval: Double

    init(upstream: UInt16, interval: Double) throws {
        self.upstream = upstream
        self.interval = interval
        (listener, port) = try ephemeralSocket(backlog: 16)
        acceptEach(listener) { [self] client in relay(client) }
    }

    /// Stops accepting (open relays end when their client closes).
    func stop() { shutdown(listener, Int32(SHUT_RDWR)) }

    deinit {
        stop()
        close(listener)
    }

    private func relay(_ client: Int32) {
        defer { close(client) }
        guard let server = try? RawConnection(port: upstream) else { return }
        var held: [UInt8] = []
        var headPassed = false
        var nextFlush = now() + interval
        var buffer = [UInt8](repeating: 0, count: 65536)
        func forward(_ bytes: [UInt8]) { bytes.withUnsafeBytes { _ = send(client, $0.baseAddress, $0.count, 0) } }
        while true {
            var fds = [
                pollfd(fd: client, events: Int16(POLLIN), revents: 0),
                pollfd(fd: server.fd, events: Int16(POLLIN), revents: 0),
            ]
            _ = poll(&fds, 2, 20)
            if fds[0].revents != 0 {
                let n = recv(client, &buffer, buffer.count, 0)
                if n <= 0 { return }
                _ = send(server.fd, buffer, n, Int32(MSG_NOSIGNAL))
            }
            if fds[1].revents != 0 {
                let n = recv(server.fd, &buffer, buffer.count, 0)
                if n <= 0 {
                    forward(held)
                    return
                }
                held += buffer[0..<n]
                if !headPassed,
                    let end = held.indices.dropLast(3).first(where: { held[$0...].starts(with: [13, 10, 13, 10]) })
                {
                    headPassed = true
                    forward(Array(held[..<(end + 4)]))
                    held.removeFirst(end + 4)
                }
            }
            if now() >= nextFlush {
                nextFlush += interval
                if headPassed, !held.isEmpty {
                    forward(held)
                    held = []
                }
            }
        }
    }
}
