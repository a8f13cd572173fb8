import ArgumentParser
import Logging
import MicroSSE

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
    @Flag(help: "Serve a live page at / that subscribes to and publishes on a channel.") var web = false

    func validate() throws {
        guard history >= 0, historyBytes >= 0 else { throw ValidationError("--history must not be negative") }
        guard heartbeat >= 0 else { throw ValidationError("--heartbeat must not be negative") }
        guard (retry ?? 0) >= 0 else { throw ValidationError("--retry must not be negative") }
        guard maxClients > 0 else { throw ValidationError("--max-clients must be at least 1") }
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
        config.connectionLimit = max(config.connectionLimit, maxClients + 240)
        let server = Server(configuration: config, logger: logger)
        if web { server.addRoute("GET", "/") { _ in .html(hubPage) } }
        try await runUntilSignalled(server, logger: logger) {
            print("Hub on http://\(common.host.contains(":") ? "[\(common.host)]" : common.host):\(server.port)/events/{channel}")
        }
    }
}
