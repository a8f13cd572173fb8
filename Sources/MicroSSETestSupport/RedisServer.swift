// Starts a real redis-server on a free loopback port for tests (installed by `make test`).
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A throwaway `redis-server` (no persistence) on 127.0.0.1; stopped on deinit.
public final class RedisServer {
    public let port: UInt16
    private var process: Process?
    private let directory: String

    private let persistent: Bool
    private let extraArguments: [String]

    /// Starts redis-server on a free port; throws if it is not installed or does not come up.
    /// `persistent` keeps data across ``stop()``/``start()`` (append-only file, fsync always),
    /// as a production Redis behind several hubs would. `arguments` are added to the command
    /// line (`["--replicaof", "127.0.0.1", "6379"]` starts a replica).
    public init(port: UInt16? = nil, persistent: Bool = false, arguments: [String] = []) throws {
        self.persistent = persistent
        extraArguments = arguments
        self.port = try port ?? freePort()
        directory = NSTemporaryDirectory() + "microsse-redis-\(getpid())-\(self.port)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try start()
    }

    /// The URL hubs take: `redis://127.0.0.1:PORT`.
    public var url: String { "redis://127.0.0.1:\(port)" }

    /// Starts (again, after ``stop()``) on the same port: empty, or with its data if persistent.
    public func start() throws {
        guard process == nil else { return }  // already running: never start a second one
        let p = Process()
        let candidates = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestClientError("redis-server is not installed (make test installs it)")
        }
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments =
            [
                "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", persistent ? "yes" : "no",
                "--appendfsync", "always", "--dir", directory, "--protected-mode", "no",
            ] + extraArguments
        process = try launchListening(p, port: port, name: "redis-server")
    }

    /// Stops the server at once (SIGKILL). A persistent one loses nothing: it fsyncs its
    /// append-only file on every write. (SIGTERM is not used: a child of the test process can
    /// inherit a signal mask that blocks it.)
    public func stop() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        awaitExit(p)
        process = nil
    }

    /// The process id while running (to signal it from another thread), else nil.
    public var processIdentifier: Int32? { process?.processIdentifier }

    /// Whether the process is running (started and not stopped).
    public var isRunning: Bool { process?.isRunning ?? false }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Waits (at most 5 s) until a killed child has exited. Not `waitUntilExit()`: Foundation can miss
/// the exit of one of several children that die together and then waits forever; a child that
/// is dead but not yet reaped (a zombie) counts as exited.
func awaitExit(_ p: Process) {
    let pid = p.processIdentifier
    _ = eventually(timeout: 5) {
        guard p.isRunning else { return true }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        // The state follows the command name in parentheses: "pid (comm) S ...".
        return stat.split(separator: ")").last?.dropFirst().first == "Z"
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
public func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
            guard bind(fd, p, len) == 0 else { return -1 }
            return getsockname(fd, p, &len)
        }
    }
    guard rc == 0 else { throw TestClientError("no free port: errno \(errno)") }
    return UInt16(bigEndian: addr.sin_port)
}

/// Runs `p` quietly and waits until it listens on `port` on 127.0.0.1 (a Redis server or sentinel).
func launchListening(_ p: Process, port: UInt16, name: String) throws -> Process {
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    guard eventually(timeout: 10, { (try? RawConnection(port: port)) != nil }) else {
        kill(p.processIdentifier, SIGKILL)
        throw TestClientError("\(name) did not listen on \(port)")
    }
    return p
}
