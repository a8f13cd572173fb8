import Dispatch
import Logging
import Synchronization

/// An embeddable Server-Sent Events server on libmicrohttpd.
///
/// ```swift
/// var config = ServerConfiguration()
/// config.port = 0
/// let server = Server(configuration: config)
/// try server.start()
/// try server.publish("hello", to: "news")   // GET /events/news receives it
/// server.stop()
/// ```
///
/// Routes and callbacks may be added before or after ``start()``. Handlers, the authorizer and
/// connect/disconnect callbacks run on libmicrohttpd's polling thread: they must return quickly
/// and never block or wait on an actor.
public final class Server: Sendable {
    /// The configuration the server was created with.
    public let configuration: ServerConfiguration
    private let logger: Logger
    let broker: any EventBroker
    private let hooks = Mutex(Hooks())
    private let lifecycle = Mutex(Lifecycle())
    private let counters = Counters()

    private struct Hooks {
        var routes: [RouteKey: @Sendable (Request) -> Response] = [:]
        var streamRoutes: [String: @Sendable (Request, Client) -> Void] = [:]
        var authorizer: (@Sendable (Request, Access) -> Authorization)?
        var onConnect: [@Sendable (Client) -> Void] = []
        var onDisconnect: [@Sendable (Client) -> Void] = []
    }

    private struct RouteKey: Hashable {
        let method: String
        let path: String
    }

    private struct Lifecycle {
        var transport: HTTPTransport?
        var handler: RequestRouter?
        var timer: DispatchSourceTimer?
        var stopped = false
        var finished = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Creates a server; nothing is bound until ``start()``.
    public init(configuration: ServerConfiguration = ServerConfiguration(), logger: Logger? = nil) {
        self.configuration = configuration
        self.logger = logger ?? Logger(label: "microsse")
        if let redis = configuration.redis {
            let log = self.logger
            self.broker = RedisBroker(
                settings: .init(
                    url: redis, prefix: configuration.redisKeyPrefix, historyCount: max(1, configuration.historyCount),
                    channelTTLSeconds: max(1, configuration.redisChannelTTLSeconds)),
                log: { message in log.warning("\(message)") })
        } else {
            self.broker = MemoryBroker(
                limits: .init(
                    historyCount: max(0, configuration.historyCount),
                    historyBytes: max(0, configuration.historyBytes)))
        }
    }

    // MARK: Routes and callbacks

    /// Serves `handler`'s response for `method path` (exact path match), e.g. a page at `/`.
    public func addRoute(_ method: String = "GET", _ path: String, handler: @escaping @Sendable (Request) -> Response) {
        hooks.withLock { $0.routes[RouteKey(method: method, path: path)] = handler }
    }

    /// Serves a private `text/event-stream` at `GET path`: `handler` gets a ``Client`` to send
    /// events to that connection alone (for as long as it stays open).
    public func addStreamRoute(_ path: String, handler: @escaping @Sendable (Request, Client) -> Void) {
        hooks.withLock { $0.streamRoutes[path] = handler }
    }

    /// Decides per request whether a subscriber or publisher may proceed; runs before any byte
    /// of the response is sent. Not consulted for `/healthz` and CORS preflights.
    public func setAuthorizer(_ authorizer: @escaping @Sendable (Request, Access) -> Authorization) {
        hooks.withLock { $0.authorizer = authorizer }
    }

    /// Adds a callback run when a stream opens (on libmicrohttpd's thread).
    public func onConnect(_ callback: @escaping @Sendable (Client) -> Void) {
        hooks.withLock { $0.onConnect.append(callback) }
    }

    /// Adds a callback run when a stream has closed, for any reason (on libmicrohttpd's thread,
    /// or on the thread calling ``stop()``).
    public func onDisconnect(_ callback: @escaping @Sendable (Client) -> Void) {
        hooks.withLock { $0.onDisconnect.append(callback) }
    }

    // MARK: Lifecycle

    /// Binds and starts serving on libmicrohttpd's thread; returns at once.
    /// Throws `.invalidState` if already started, `.startFailed` if the address cannot be bound,
    /// `.unavailable` if the configured Redis cannot be reached.
    public func start() throws(MicroSSEError) {
        let router = RequestRouter(server: self)
        let transport = HTTPTransport(options: transportOptions(), delegate: router)
        try lifecycle.withLock { (l: inout Lifecycle) throws(MicroSSEError) in
            guard l.transport == nil, !l.stopped else {
                throw MicroSSEError(.invalidState, "the server was already started")
            }
            try broker.start()
            do throws(MicroSSEError) {
                try transport.start()
            } catch {
                broker.shutdown()
                throw error
            }
            l.transport = transport
            l.handler = router
            l.timer = startTicker(transport)
        }
        let scheme = configuration.tls == nil ? "http" : "https"
        logger.info("microsse listening on \(scheme)://\(hostForURL):\(port)")
    }

    /// The bound port (useful with port 0), or 0 before ``start()``.
    public var port: UInt16 {
        lifecycle.withLock { $0.transport?.boundPort.load(ordering: .acquiring) ?? 0 }
    }

    /// Stops gracefully: refuses new requests, ends every stream with its final chunk (waiting at
    /// most ``ServerConfiguration/shutdownDrainMilliseconds``), then releases the port.
    /// Idempotent; callable from any thread (not from a handler).
    public func stop() {
        let (transport, timer) = lifecycle.withLock { l in
            let first = !l.stopped
            l.stopped = true
            defer { l.timer = nil }
            return (first ? l.transport : nil, l.timer)
        }
        timer?.cancel()
        if let transport {
            broker.shutdown()
            transport.stop()
            logger.info("microsse stopped")
        }
        let waiters = lifecycle.withLock { l in
            l.finished = true
            l.handler = nil
            defer { l.waiters = [] }
            return l.waiters
        }
        for w in waiters { w.resume() }
    }

    /// Starts the server and returns when it has stopped, by ``stop()`` or by cancelling the task.
    public func run() async throws {
        try start()
        await waitUntilStopped()
    }

    /// Returns once ``stop()`` has finished (at once if it already has). Cancelling the waiting
    /// task stops the server.
    public func waitUntilStopped() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let done = lifecycle.withLock { l -> Bool in
                    if l.finished { return true }
                    l.waiters.append(c)
                    return false
                }
                if done { c.resume() }
            }
        } onCancel: {
            stop()
        }
    }

    // MARK: Publishing

    /// Publishes `event` to `channel` and returns its id (the event's own, or one assigned).
    /// Thread-safe. Throws `.invalidChannel`, or `.unavailable` once stopping.
    @discardableResult
    public func publish(_ event: Event, to channel: String) throws(MicroSSEError) -> String {
        let id = try broker.publish(event, to: channel)
        counters.published.add(1, ordering: .relaxed)
        return id
    }

    /// Publishes `data` (validated like ``Event``) to `channel`; returns the event's id.
    @discardableResult
    public func publish(
        _ data: String, event: String? = nil, id: String? = nil, to channel: String
    ) throws(MicroSSEError) -> String {
        try publish(Event(data: data, event: event, id: id), to: channel)
    }

    /// Counters since start.
    public var statistics: Statistics {
        let transport = lifecycle.withLock { $0.transport }
        return Statistics(
            clients: transport?.streamCount ?? 0,
            channels: broker.channelCount,
            published: counters.published.load(ordering: .relaxed),
            delivered: transport?.deliveredEvents.load(ordering: .relaxed) ?? 0,
            bytes: transport?.deliveredBytes.load(ordering: .relaxed) ?? 0,
            drops: counters.drops.load(ordering: .relaxed),
            disconnects: counters.disconnects.load(ordering: .relaxed))
    }

    // MARK: Internals used by the router

    fileprivate var hostForURL: String {
        configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
    }

    /// The buffer libmicrohttpd allocates with every stream's response. It bounds one content-reader
    /// call only for HTTP/1.0 (close-delimited) streams; HTTP/1.1 readers fill the connection's pool.
    /// Small, because every held stream pays for it (MHD-NOTES trap 6).
    static let streamBlockSize = 256

    private func transportOptions() -> TransportOptions {
        let c = configuration
        return TransportOptions(
            host: c.host, port: c.port, connectionLimit: c.connectionLimit,
            connectionMemoryLimit: c.connectionMemoryLimit, connectionTimeout: c.connectionTimeoutSeconds,
            blockSize: Self.streamBlockSize, threadPoolSize: c.threadPoolSize,
            perIPConnectionLimit: c.perIPConnectionLimit,
            maxStreams: c.maxClients, maxBodyBytes: c.maxPublishBytes, tlsCertificatePEM: c.tls?.certificatePEM,
            tlsKeyPEM: c.tls?.privateKeyPEM, drainTimeoutMilliseconds: c.shutdownDrainMilliseconds)
    }

    /// One timer for heartbeats and dead-peer detection on every stream.
    private func startTicker(_ transport: HTTPTransport) -> DispatchSourceTimer {
        let heartbeat = configuration.heartbeatSeconds
        let interval = heartbeat > 0 ? heartbeat : 5
        let stallTicks =
            configuration.writeTimeoutSeconds > 0
            ? max(1, (configuration.writeTimeoutSeconds + interval - 1) / interval) : 0
        let frame = heartbeat > 0 ? Frame(bytes: EventEncoder.comment(""), isEvent: false) : nil
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        timer.schedule(deadline: .now() + .seconds(interval), repeating: .seconds(interval))
        timer.setEventHandler { [weak transport] in
            guard let transport else { return }
            for sub in transport.streams() {
                _ = sub.tick(heartbeat: frame, stallTicks: stallTicks)
            }
        }
        timer.resume()
        return timer
    }

    fileprivate func route(_ method: String, _ path: String) -> (@Sendable (Request) -> Response)? {
        hooks.withLock { $0.routes[RouteKey(method: method, path: path)] }
    }

    fileprivate func allowedMethods(_ path: String) -> [String] {
        hooks.withLock { h in
            var methods = h.routes.keys.filter { $0.path == path }.map(\.method)
            if h.streamRoutes[path] != nil { methods.append("GET") }
            return methods.sorted()
        }
    }

    fileprivate func streamRoute(_ path: String) -> (@Sendable (Request, Client) -> Void)? {
        hooks.withLock { $0.streamRoutes[path] }
    }

    fileprivate func authorize(_ request: Request, _ access: Access) -> Authorization {
        guard let authorizer = hooks.withLock({ $0.authorizer }) else { return .allow }
        return authorizer(request, access)
    }

    fileprivate func opened(_ client: Client) {
        logger.debug("client \(client.id) connected from \(client.request.remoteAddress) to \(client.request.path)")
        for callback in hooks.withLock({ $0.onConnect }) { callback(client) }
    }

    fileprivate func closed(_ client: Client) {
        broker.unsubscribe(client.subscriber)
        counters.disconnects.add(1, ordering: .relaxed)
        if client.subscriber.wasDropped { counters.drops.add(1, ordering: .relaxed) }
        logger.debug("client \(client.id) disconnected")
        for callback in hooks.withLock({ $0.onDisconnect }) { callback(client) }
    }

    fileprivate func logTransport(_ message: String) {
        logger.debug("libmicrohttpd: \(message)")
    }

    fileprivate var currentStreamCount: Int {
        lifecycle.withLock { $0.transport?.streamCount ?? 0 }
    }

    fileprivate func countPublished() {
        counters.published.add(1, ordering: .relaxed)
    }
}

private final class Counters: Sendable {
    let published = Atomic<Int>(0)
    let drops = Atomic<Int>(0)
    let disconnects = Atomic<Int>(0)
}

/// Turns requests into replies for the transport: custom routes, the built-in channel routes,
/// CORS, the publish token and the authorizer.
private final class RequestRouter: TransportDelegate {
    // Unowned-safe: the server owns the router through its lifecycle and outlives the transport.
    private let server: Server

    init(server: Server) {
        self.server = server
    }

    func log(_ message: String) {
        server.logTransport(message)
    }

    func handle(_ request: Request) -> TransportReply {
        let config = server.configuration
        let origin = request.header("Origin")
        let corsOrigin = origin.flatMap { o in
            config.corsOrigins.contains(o) ? o : (config.corsOrigins.contains("*") ? "*" : nil)
        }
        var reply = route(request, corsAllowed: corsOrigin != nil)
        // With CORS configured, every answer depends on Origin (caches must know), allowed or not.
        var cors: [(name: String, value: String)] = config.corsOrigins.isEmpty ? [] : [("Vary", "Origin")]
        if let corsOrigin {
            cors += [
                ("Access-Control-Allow-Origin", corsOrigin),
                ("Access-Control-Expose-Headers", "\(gapHeader), Retry-After"),
            ]
        }
        if !cors.isEmpty {
            switch reply {
            case .response(var r):
                r.headers += cors
                reply = .response(r)
            case .stream(let headers, let sub, let onClose):
                reply = .stream(headers: headers + cors, subscriber: sub, onClose: onClose)
            }
        }
        return reply
    }

    private func route(_ request: Request, corsAllowed: Bool) -> TransportReply {
        let path = request.path
        if request.method == "OPTIONS" {
            return .response(preflight(request, corsAllowed: corsAllowed))
        }
        if let handler = server.route(request.method, path) {
            if case .deny(let status, let reason) = server.authorize(request, .route(path: path)) {
                return .response(.text(reason, status: status))
            }
            return .response(handler(request))
        }
        if let handler = server.streamRoute(path), request.method == "GET" || request.method == "HEAD" {
            return privateStream(request, handler)
        }
        let config = server.configuration
        if config.statusRoutes && (path == "/healthz" || path == "/stats" || path == "/metrics") {
            guard request.method == "GET" || request.method == "HEAD" else { return methodNotAllowed(["GET"]) }
            if path == "/healthz" { return .response(.text("ok")) }
            if case .deny(let status, let reason) = server.authorize(request, .route(path: path)) {
                return .response(.text(reason, status: status))
            }
            if path == "/metrics" {
                return .response(
                    Response(
                        status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                        body: Array(prometheusText().utf8)))
            }
            return .response(.json(statsJSON()))
        }
        if config.channelRoutes && (path == "/events" || path.hasPrefix("/events/")) {
            return channelRoute(request)
        }
        let allowed = server.allowedMethods(path)
        if !allowed.isEmpty { return methodNotAllowed(allowed) }
        return .response(.text("not found: \(path)", status: 404))
    }

    private func methodNotAllowed(_ allowed: [String]) -> TransportReply {
        var r = Response.text("method not allowed", status: 405)
        r.headers.append(("Allow", allowed.joined(separator: ", ")))
        return .response(r)
    }

    private func preflight(_ request: Request, corsAllowed: Bool) -> Response {
        guard corsAllowed else {
            return .text("origin not allowed", status: 403)
        }
        var r = Response(status: 204)
        r.headers += [
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", "Last-Event-ID, Authorization, Content-Type, Cache-Control"),
            ("Access-Control-Max-Age", "86400"),
        ]
        return r
    }

    private func channelRoute(_ request: Request) -> TransportReply {
        let config = server.configuration
        let rest = request.path.dropFirst("/events".count)
        var channels: [String]
        if rest.isEmpty || rest == "/" {
            channels = request.queryValues("channel")
            if request.method == "POST" { return methodNotAllowed(["GET"]) }
        } else {
            let name = String(rest.dropFirst())
            if name.contains("/") { return .response(.text("not found: \(request.path)", status: 404)) }
            channels = [name]
            if request.method == "POST" {
                guard config.publishing else { return methodNotAllowed(["GET"]) }
                return .response(publish(request, channel: name))
            }
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            return methodNotAllowed(
                config.publishing && channels.count == 1 && !rest.isEmpty ? ["GET", "POST"] : ["GET"])
        }
        guard !channels.isEmpty else {
            return .response(
                .text("name at least one channel: /events/{channel} or /events?channel=a&channel=b", status: 400))
        }
        var seen = Set<String>()
        channels = channels.filter { seen.insert($0).inserted }
        for c in channels {
            do throws(MicroSSEError) {
                try ChannelName.validate(c)
            } catch {
                return .response(.text(error.message, status: 400))
            }
        }
        if case .deny(let status, let reason) = server.authorize(request, .subscribe(channels: channels)) {
            return .response(.text(reason, status: status))
        }
        if let full = refuseIfFull() { return full }
        let subscriber = Subscriber(channels: channels, limit: config.clientBufferBytes)
        sendRetry(subscriber)
        let lastEventID = (request.header("Last-Event-ID") ?? request.queryValue("lastEventId")).flatMap {
            $0.isEmpty ? nil : $0
        }
        let status = server.broker.subscribe(subscriber, after: lastEventID)
        var headers = streamHeaders
        if case .gap(let reason) = status { headers.append((gapHeader, reason.rawValue)) }
        return openStream(Client(request: request, subscriber: subscriber), headers: headers)
    }

    private func privateStream(_ request: Request, _ handler: @Sendable (Request, Client) -> Void) -> TransportReply {
        if case .deny(let status, let reason) = server.authorize(request, .stream(path: request.path)) {
            return .response(.text(reason, status: status))
        }
        if let full = refuseIfFull() { return full }
        let subscriber = Subscriber(channels: [], limit: server.configuration.clientBufferBytes)
        sendRetry(subscriber)
        let client = Client(request: request, subscriber: subscriber)
        handler(request, client)
        return openStream(client, headers: streamHeaders)
    }

    private func openStream(_ client: Client, headers: [(name: String, value: String)]) -> TransportReply {
        server.opened(client)
        let server = self.server
        return .stream(headers: headers, subscriber: client.subscriber, onClose: { server.closed(client) })
    }

    private func refuseIfFull() -> TransportReply? {
        guard server.currentStreamCount >= server.configuration.maxClients else { return nil }
        var r = Response.text("too many subscribers", status: 503)
        r.headers.append(("Retry-After", "5"))
        return .response(r)
    }

    private func sendRetry(_ subscriber: Subscriber) {
        if let retry = server.configuration.retryMilliseconds, retry >= 0 {
            subscriber.enqueue(Frame(bytes: EventEncoder.retry(milliseconds: retry), isEvent: false))
        }
    }

    private func publish(_ request: Request, channel: String) -> Response {
        let config = server.configuration
        if let token = config.publishToken {
            guard let given = bearerToken(request), constantTimeEquals(given, token) else {
                var r = Response.text("publishing needs Authorization: Bearer <token>", status: 401)
                r.headers.append(("WWW-Authenticate", "Bearer"))
                return r
            }
        }
        if case .deny(let status, let reason) = server.authorize(request, .publish(channel: channel)) {
            return .text(reason, status: status)
        }
        do throws(MicroSSEError) {
            try ChannelName.validate(channel)
            let event = try Event(
                utf8Data: request.body, event: request.queryValue("event"), id: request.queryValue("id"))
            let id = try server.publish(event, to: channel)
            return .json(JSON.object([("id", JSON.quote(id))]), status: 202)
        } catch {
            switch error.code {
            case .unavailable: return .text(error.message, status: 503)
            case .payloadTooLarge: return .text(error.message, status: 413)
            default: return .text(error.message, status: 400)
            }
        }
    }

    private func statsJSON() -> String {
        let s = server.statistics
        return JSON.object([
            ("clients", String(s.clients)), ("channels", String(s.channels)), ("published", String(s.published)),
            ("delivered", String(s.delivered)), ("bytes", String(s.bytes)), ("drops", String(s.drops)),
            ("disconnects", String(s.disconnects)),
        ])
    }

    /// The counters of ``statsJSON()`` in the Prometheus text exposition format (version 0.0.4).
    private func prometheusText() -> String {
        let s = server.statistics
        let metrics: [(name: String, type: String, help: String, value: Int)] = [
            ("microsse_clients", "gauge", "Streams open now.", s.clients),
            ("microsse_channels", "gauge", "Channels with history or subscribers.", s.channels),
            ("microsse_events_published_total", "counter", "Events published to channels.", s.published),
            (
                "microsse_events_delivered_total", "counter", "Events written to streams (one per subscriber).",
                s.delivered
            ),
            ("microsse_stream_bytes_total", "counter", "Stream bytes written to sockets.", s.bytes),
            ("microsse_drops_total", "counter", "Streams disconnected for falling behind.", s.drops),
            ("microsse_disconnects_total", "counter", "Streams ended, for any reason.", s.disconnects),
        ]
        var out = ""
        for m in metrics {
            out += "# HELP \(m.name) \(m.help)\n# TYPE \(m.name) \(m.type)\n\(m.name) \(m.value)\n"
        }
        return out
    }

    private var streamHeaders: [(name: String, value: String)] {
        [
            ("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ]
    }
}

/// The response header that says a resumed stream may have missed events; its value is the
/// reason (`evicted` or `unknown`), the same as the `microsse.gap` event's `reason`.
let gapHeader = "MicroSSE-Gap"

private func bearerToken(_ request: Request) -> String? {
    guard let value = request.header("Authorization") else { return nil }
    let parts = value.split(separator: " ", maxSplits: 1)
    guard parts.count == 2, asciiCaseInsensitiveEquals(String(parts[0]), "Bearer") else { return nil }
    return String(parts[1])
}

/// Compares secrets in time that depends only on their lengths, not on where they differ.
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    var diff = UInt8(x.count == y.count ? 0 : 1)
    let n = max(x.count, y.count)
    for i in 0..<n {
        diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return diff == 0
}
