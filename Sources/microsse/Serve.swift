import ArgumentParser
import Logging
import MicroSSE
import MicroSSEMercure
import MicroSSERedis

#if canImport(Glibc)
    import Glibc
#endif

/// The publish/subscribe hub: backends POST, browsers subscribe and resume.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the publish/subscribe hub (POST /events/{channel}, GET /events/{channel}).")

    private static let defaults = ServerConfiguration()

    @OptionGroup var common: CommonOptions
    @Option(help: "Require 'Authorization: Bearer TOKEN' to publish.") var publishToken: String?
    @Option(help: "Events kept per channel for Last-Event-ID resume.") var history = defaults.historyCount
    @Option(help: "Encoded bytes kept per channel for resume.") var historyBytes = defaults.historyBytes
    @Option(
        help:
            "Bytes of history kept for all channels together, bookkeeping included; over it the oldest events of any channel go first."
    )
    var historyMemory = defaults.historyMemoryBytes
    @Option(help: "Connections one IP address may hold at once (0 = no limit); more are closed at once.")
    var maxClientsPerIp = defaults.perIPConnectionLimit
    @Option(help: "A host name (Host header, no port) to answer for (repeatable); others get 421.")
    var allowedHost: [String] = []
    @Option(help: "Require JWTs signed with this HS256 secret (at least 32 bytes) to subscribe or publish.")
    var jwtSecret: String?
    @Option(help: "Require JWTs verified by this PEM public key file (RSA: RS256, P-256: ES256) to subscribe.")
    var jwtKey: String?
    @Option(help: "A channel pattern (name, prefix*, or *) anyone may subscribe to without a token (repeatable).")
    var publicChannel: [String] = []
    @Option(help: "Seconds between heartbeat comments on idle streams (0 = off).")
    var heartbeat = defaults.heartbeatSeconds
    @Option(help: "retry: value in milliseconds sent at the start of every stream.") var retry: Int?
    @Option(help: "An origin allowed to subscribe cross-origin (repeatable; * = any).") var corsOrigin: [String] = []
    @Option(help: "Streams served at once; more get 503 with Retry-After.") var maxClients = defaults.maxClients
    @Option(help: "Bytes one subscriber may have pending before it is disconnected.")
    var clientBufferBytes = defaults.clientBufferBytes
    @Option(help: "Largest publish body in bytes; larger gets 413.") var maxPublishBytes = defaults.maxPublishBytes
    @Option(help: "Seconds a stream may have output pending while the peer reads nothing (0 = no limit).")
    var writeTimeout = defaults.writeTimeoutSeconds
    @Option(help: "TLS certificate chain (PEM) for HTTPS; needs --tls-key.") var tlsCert: String?
    @Option(help: "TLS private key (PEM, unencrypted) for HTTPS; needs --tls-cert.") var tlsKey: String?
    @Option(
        help:
            "Share channels, ids and history with other hubs through Redis (redis://[:PASSWORD@]HOST[:PORT][/DB], or redis-sentinel://HOST:PORT[,HOST:PORT...]/MASTER; options ?wait=auto|N|all&waitTimeout=MS&workers=N&queue=N). Repeat it for shards (at most 16, the same order on every hub, new ones at the end)."
    )
    var redis: [String] = []
    @Option(
        help:
            "libmicrohttpd's memory per connection in bytes: a request's line and headers must fit in it (about 16 KB at the default; more gets 431)."
    )
    var connectionMemory = defaults.connectionMemoryLimit
    @Option(help: "libmicrohttpd polling threads (1 = one epoll thread; more spread streams over more cores).")
    var threads = defaults.threadPoolSize
    @Option(help: "On stop, tell each browser to reconnect after a random delay within this many seconds (0 = none).")
    var drainWindow = defaults.drainWindowMilliseconds / 1_000
    @Option(help: "Seconds an event stays replayable for Last-Event-ID resume (0 = no age limit).")
    var historyTtl = defaults.historyTTLSeconds
    @Option(help: "Most distinct channels one stream may carry; a subscribe naming more gets 400.")
    var maxChannelsPerStream = defaults.maxChannelsPerStream
    @Flag(help: "Serve a live page at / that subscribes to and publishes on a channel.") var web = false
    @Option(help: "Read the publish token from this file (one trailing newline dropped); keeps it out of ps.")
    var publishTokenFile: String?
    @Option(
        help:
            "Require 'Authorization: Bearer TOKEN' to read /stats and /metrics (default: anyone may read them)."
    )
    var statsToken: String?
    @Option(help: "Read the stats token from this file (one trailing newline dropped); keeps it out of ps.")
    var statsTokenFile: String?
    @Flag(help: "Log one line per request and per ended stream: who, what, status, bytes, how long.")
    var accessLog = false
    @Flag(help: "Serve the Mercure hub at /.well-known/mercure (draft-08; needs --jwt-secret or --jwt-key).")
    var mercure = false
    @Flag(help: "Mercure: speak draft-07 (topic=, the mercure claim, mercureAuthorization, lastEventID).")
    var mercureLegacy = false
    @Flag(help: "Mercure: active subscriptions (subscription events and /.well-known/mercure/subscriptions).")
    var mercureSubscriptions = false
    @Option(help: "Mercure: a trusted token issuer (iss), repeatable; draft-08 needs one.")
    var mercureIssuer: [String] = []
    @Option(help: "Mercure: the hub's resource identifier, which draft-08 tokens name in aud.")
    var mercureAudience: String?

    /// The configuration the flags describe (TLS files are read by ``run()``).
    private func configuration() throws(MicroSSEError) -> ServerConfiguration {
        var config = ServerConfiguration()
        config.host = common.host
        config.port = common.port
        config.publishing = true
        config.publishToken = publishToken
        config.historyCount = history
        config.historyBytes = historyBytes
        config.historyMemoryBytes = historyMemory
        config.perIPConnectionLimit = maxClientsPerIp
        config.allowedHosts = allowedHost
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
        config.drainWindowMilliseconds = drainWindow * 1_000
        config.historyTTLSeconds = historyTtl
        config.maxChannelsPerStream = maxChannelsPerStream
        if jwtSecret != nil, jwtKey != nil {
            throw MicroSSEError(
                .invalidArgument, "give --jwt-secret (or MICROSSE_JWT_SECRET) or --jwt-key, not both")
        }
        if let jwtSecret { config.jwt = JWTSettings(secret: jwtSecret) }
        if let jwtKey { config.jwt = try JWTSettings(publicKeyFile: jwtKey) }
        config.publicChannels = publicChannel
        config.raiseFileLimit = true
        config.redisShards = try redis.map { (url) throws(MicroSSEError) in try RedisURL(url) }
        if let publishTokenFile {
            guard publishToken == nil else {
                throw MicroSSEError(.invalidArgument, "give --publish-token or --publish-token-file, not both")
            }
            config.publishToken = try readSecret(publishTokenFile)
        }
        config.statsToken = statsToken
        if mercure || mercureLegacy || mercureSubscriptions || !mercureIssuer.isEmpty || mercureAudience != nil {
            guard mercure else {
                throw MicroSSEError(
                    .invalidArgument,
                    "--mercure-legacy, --mercure-subscriptions, --mercure-issuer and --mercure-audience need --mercure")
            }
            config.mercure = MercureSettings(
                enabled: true, legacy: mercureLegacy, subscriptions: mercureSubscriptions, issuers: mercureIssuer,
                audience: mercureAudience)
        }
        if let statsTokenFile {
            guard statsToken == nil else {
                throw MicroSSEError(.invalidArgument, "give --stats-token or --stats-token-file, not both")
            }
            config.statsToken = try readSecret(statsTokenFile)
        }
        return config
    }

    func validate() throws {
        guard (tlsCert == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key must be given together")
        }
        do throws(MicroSSEError) {
            try configuration().validate()
        } catch {
            throw ValidationError(error.message)
        }
    }

    func run() async throws {
        let logger = makeLogger(common.logLevel)
        var config = try configuration()
        if let tlsCert, let tlsKey {
            config.tls = try ServerConfiguration.TLS(certificateFile: tlsCert, privateKeyFile: tlsKey)
        }
        let server = Server(configuration: config, logger: logger)
        if accessLog {
            var access = Logger(label: "microsse.access")
            access.logLevel = .info
            server.setAccessLog(access)
        }
        if web { try server.addRoute("GET", "/") { _ in .html(hubPage) } }
        try server.addRoute("GET", "/microsse.js") { _ in
            Response(headers: [("Content-Type", "text/javascript; charset=utf-8")], body: Array(microsseScript.utf8))
        }
        let scheme = config.tls == nil ? "http" : "https"
        let mercureOn = config.mercure.enabled
        let host = common.host.contains(":") ? "[\(common.host)]" : common.host
        try await runUntilSignalled(server, logger: logger) {
            print("Hub on \(scheme)://\(host):\(server.port)/events/{channel}")
            if mercureOn { print("Mercure hub on \(scheme)://\(host):\(server.port)/.well-known/mercure") }
            // stdout is block-buffered when it is a pipe: whoever started us is waiting for the URL.
            fflush(nil)
        }
    }
}
