// Starts a real Redis primary, two replicas and three sentinels on loopback for failover tests.
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One `redis-sentinel` process with its own configuration file (a sentinel rewrites it).
public final class RedisSentinel {
    public let port: UInt16
    private var process: Process?
    private let directory: String

    /// Starts a sentinel monitoring `masterName` at 127.0.0.1:`primaryPort` with `quorum`,
    /// declaring the primary down after `downAfterMilliseconds` and bounding a failover by
    /// `failoverTimeoutMilliseconds`.
    public init(
        masterName: String, primaryPort: UInt16, quorum: Int = 2, downAfterMilliseconds: Int = 1_000,
        failoverTimeoutMilliseconds: Int = 3_000
    ) throws {
        port = try freePort()
        directory = NSTemporaryDirectory() + "microsse-sentinel-\(getpid())-\(port)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let conf = """
            port \(port)
            bind 127.0.0.1
            protected-mode no
            dir \(directory)
            sentinel monitor \(masterName) 127.0.0.1 \(primaryPort) \(quorum)
            sentinel down-after-milliseconds \(masterName) \(downAfterMilliseconds)
            sentinel failover-timeout \(masterName) \(failoverTimeoutMilliseconds)
            sentinel parallel-syncs \(masterName) 2

            """
        let path = directory + "/sentinel.conf"
        try conf.write(toFile: path, atomically: true, encoding: .utf8)
        let p = Process()
        // Debian's redis-sentinel package links /usr/bin/redis-sentinel; redis-server --sentinel
        // is the same program.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-sentinel") {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/redis-sentinel")
            p.arguments = [path]
        } else if FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server") {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
            p.arguments = [path, "--sentinel"]
        } else {
            throw TestClientError("redis-sentinel is not installed (make test installs it)")
        }
        process = try launchListening(p, port: port, name: "redis-sentinel")
    }

    /// Stops the sentinel at once (SIGKILL).
    public func stop() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        awaitExit(p)
        process = nil
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A primary, its replicas (`--replicaof`; two unless told) and three sentinels (quorum 2) on
/// 127.0.0.1, all stopped on deinit.
public final class RedisSentinelCluster {
    public let masterName: String
    /// `servers[0]` starts as the primary.
    public let servers: [RedisServer]
    public let sentinels: [RedisSentinel]

    /// Starts the primary, `replicas` replicas of it (1-4) and three sentinels.
    public init(masterName: String = "microsse", replicas: Int = 2) throws {
        guard (1...4).contains(replicas) else { throw TestClientError("replicas must be 1-4 (got \(replicas))") }
        self.masterName = masterName
        // A replica that must fully resynchronise after a failover does so at once (Redis waits
        // 5 s by default to serve several replicas with one transfer).
        let fast = ["--repl-diskless-sync-delay", "0"]
        let primary = try RedisServer(arguments: fast)
        let replicaOf = fast + ["--replicaof", "127.0.0.1", String(primary.port)]
        servers = try [primary] + (0..<replicas).map { _ in try RedisServer(arguments: replicaOf) }
        sentinels = try (0..<3).map { _ in try RedisSentinel(masterName: masterName, primaryPort: primary.port) }
    }

    /// The URL hubs take: every sentinel, the master name, and `query` (without `?`).
    public func url(query: String = "") -> String {
        let list = sentinels.map { "127.0.0.1:\($0.port)" }.joined(separator: ",")
        return "redis-sentinel://\(list)/\(masterName)" + (query.isEmpty ? "" : "?" + query)
    }

    deinit {
        sentinels.forEach { $0.stop() }
        servers.forEach { $0.stop() }
    }
}
