import ArgumentParser
import Logging
import MicroSSE

#if canImport(Glibc)
    import Glibc
#endif

/// The publish/subscribe hub: backends POST, browsers subscribe and resume.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the publish/subscribe hub (POST /events/{channel}, GET /events/{channel}).")

    @OptionGroup var common: CommonOptions
    @Option(help: "Require 'Authorization: Bearer TOKEN' to publish.") var publishToken: String?
    @Option(help: "Events kept per channel for Last-Event-ID resume.") var history = 1_000
    @Option(help: "Encoded bytes kept per channel for resume.") var historyBytes = 8 << 20
    @Option(help: "Seconds between heartbeat comments on idle streams (0 = off).") var heartbeat = 15
    @Option(help: "retry: value in milliseconds sent at the start of every stream.") var retry: Int?
    @Option(help: "An origin allowed to subscribe cross-origin (repeatable; * = any).") var corsOrigin: [String] = []
    @Option(help: "Streams served at once; more get 503 with Retry-After.") var maxClients = 10_000
    @Option(help: "Bytes one subscriber may have pending before it is disconnected.")
    var clientBufferBytes = 8 << 20
    @Option(help: "Largest publish body in bytes; larger gets 413.") var maxPublishBytes = 2 << 20
    @Option(help: "Seconds a stream may have output pending while the peer reads nothing (0 = no limit).")
    var writeTimeout = 30
    @Option(help: "TLS certificate chain (PEM) for HTTPS; needs --tls-key.") var tlsCert: String?
    @Option(help: "TLS private key (PEM, unencrypted) for HTTPS; needs --tls-cert.") var tlsKey: String?
    @Option(
        help: "Share channels, ids and history with other hubs through Redis (redis://[:PASSWORD@]HOST[:PORT][/DB]).")
    var redis: String?
    @Option(
        help:
            "libmicrohttpd's memory per connection in bytes: request headers must fit in it; smaller saves memory per idle stream."
    )
    var connectionMemory = ServerConfiguration().connectionMemoryLimit
    @Option(help: "libmicrohttpd polling threads (1 = one epoll thread; more spread streams over more cores).")
    var threads = 1
    @Flag(help: "Serve a live page at / that subscribes to and publishes on a channel.") var web = false

    func validate() throws {
        guard history >= 0 else { throw ValidationError("--history must not be negative") }
        guard historyBytes >= 0 else { throw ValidationError("--history-bytes must not be negative") }
        guard heartbeat >= 0 else { throw ValidationError("--heartbeat must not be negative") }
        guard (retry ?? 0) >= 0 else { throw ValidationError("--retry must not be negative") }
        guard maxClients > 0 else { throw ValidationError("--max-clients must be at least 1") }
        guard clientBufferBytes >= 1024 else { throw ValidationError("--client-buffer-bytes must be at least 1024") }
        guard maxPublishBytes >= 0 else { throw ValidationError("--max-publish-bytes must not be negative") }
        guard writeTimeout >= 0 else { throw ValidationError("--write-timeout must not be negative") }
        guard connectionMemory >= 2048 else { throw ValidationError("--connection-memory must be at least 2048") }
        guard (1...256).contains(threads) else { throw ValidationError("--threads must be between 1 and 256") }
        guard (tlsCert == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key must be given together")
        }
        if let redis {
            do throws(MicroSSEError) {
                _ = try RedisURL(redis)
            } catch {
                throw ValidationError(error.message)
            }
        }
    }

    func run() async throws {
        let logger = makeLogger(common.logLevel)
        var config = ServerConfiguration()
        config.host = common.host
        config.port = common.port
        config.publishing = true
        config.publishToken = publishToken
        config.historyCount = history
        config.historyBytes = historyBytes
        config.heartbeatSeconds = heartbeat
        config.retryMilliseconds = retry
        config.corsOrigins = corsOrigin
        config.maxClients = maxClients
        config.clientBufferBytes = clientBufferBytes
        config.maxPublishBytes = maxPublishBytes
        config.writeTimeoutSeconds = writeTimeout
        config.connectionLimit = max(config.connectionLimit, maxClients + 240)
        config.connectionMemoryLimit = connectionMemory
        config.threadPoolSize = threads
        if let tlsCert, let tlsKey {
            config.tls = try ServerConfiguration.TLS(certificateFile: tlsCert, privateKeyFile: tlsKey)
        }
        if let redis { config.redis = try RedisURL(redis) }
        let server = Server(configuration: config, logger: logger)
        if web { server.addRoute("GET", "/") { _ in .html(hubPage) } }
        let scheme = config.tls == nil ? "http" : "https"
        let host = common.host.contains(":") ? "[\(common.host)]" : common.host
        try await runUntilSignalled(server, logger: logger) {
            print("Hub on \(scheme)://\(host):\(server.port)/events/{channel}")
            // stdout is block-buffered when it is a pipe: whoever started us is waiting for the URL.
            fflush(nil)
        }
    }
}
