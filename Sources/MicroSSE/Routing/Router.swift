import MicroSSECore
import MicroSSETransport

/// One entry of the built-in route table.
struct Route: Sendable {
    enum Match: Sendable {
        case exact(String)
        /// Every path that starts with this prefix.
        case prefix(String)
    }

    let match: Match
    /// The methods the route answers (`GET` implies `HEAD`); others get `405` with `Allow`.
    let methods: [String]
    let handle: @Sendable (Request, Router) -> TransportReply

    func matches(_ path: String) -> Bool {
        switch match {
        case .exact(let p): path == p
        case .prefix(let p): path.hasPrefix(p)
        }
    }
}

/// A check that runs before the authorizer on every request that asks for something (the
/// publish token, for example). Returns the refusal, or nil to let the request go on.
protocol RequestGuard: Sendable {
    func check(_ request: Request, _ access: Access) -> Response?
}

/// Turns requests into replies for the transport: the embedder's routes first, then the
/// built-in table, with CORS around every answer. Authorization happens in one place,
/// ``authorize(_:_:)``, which every route that serves something calls once, after parsing the
/// request and before doing anything.
final class Router: TransportDelegate {
    let hub: Hub
    private let routes: [Route]
    private let guards: [any RequestGuard]
    private let cors: CORSPolicy
    /// Route sets other modules add (``ServerConfiguration/routeSetFactory``).
    private let routeSets: [any RouteSet]

    init(hub: Hub) {
        self.hub = hub
        let config = hub.configuration
        var routes: [Route] = []
        if config.statusRoutes { routes += StatusRoutes.routes }
        if config.channelRoutes { routes += ChannelRoutes.routes(publishing: config.publishing) }
        self.routes = routes
        var guards: [any RequestGuard] = []
        guards.append(SiteGuard(allowedHosts: config.allowedHosts, corsOrigins: config.corsOrigins))
        if let jwt = hub.jwt { guards.append(JWTGuard(authority: jwt)) }
        if let token = config.publishToken, hub.jwt == nil { guards.append(PublishTokenGuard(token: token)) }
        self.guards = guards
        let routeSets = config.routeSetFactory?.makeRouteSet(config).map { [$0] } ?? []
        self.routeSets = routeSets
        self.cors = CORSPolicy(origins: config.corsOrigins, exposed: routeSets.flatMap(\.exposedHeaders))
    }

    /// The route set serving `path`, if any.
    private func routeSet(for path: String) -> (any RouteSet)? {
        routeSets.first { set in
            set.paths.contains(path) || set.pathPrefixes.contains { path.hasPrefix($0 + "/") }
        }
    }

    /// Starts the route sets (the broker has started).
    func startRouteSets() throws(MicroSSEError) {
        for set in routeSets { try set.start(RouteSetHost(router: self)) }
    }

    /// Stops the route sets (before the broker shuts down).
    func stopRouteSets() {
        for set in routeSets { set.stop() }
    }

    func log(_ message: String) {
        hub.logger.debug("libmicrohttpd: \(redactingTokens(message))")
    }

    /// Refuses a publish on its head, before the transport stores a byte of its body (or sends
    /// `100 Continue`): `POST /events/{channel}` gets the same channel check and the same
    /// ``authorize(_:_:)`` as when its body is in (which runs again then, with the body: a
    /// publish is decided on its head and on its whole). Everything else goes on.
    func admit(_ head: Request) -> Response? {
        let config = hub.configuration
        if head.method == "POST", let set = routeSet(for: head.path),
            hub.registry.withLock({ $0.routes[Hub.RouteKey(method: head.method, path: head.path)] == nil }),
            let refusal = set.admit(head, RouteSetHost(router: self))
        {
            guard
                case .response(let decorated) = cors.decorate(.response(refusal), origin: cors.allowedOrigin(for: head))
            else { return refusal }
            return decorated
        }
        guard head.method == "POST", config.channelRoutes, config.publishing, head.path.hasPrefix("/events/") else {
            return nil
        }
        let key = Hub.RouteKey(method: head.method, path: head.path)
        if hub.registry.withLock({ $0.routes[key] != nil }) { return nil }
        let name = String(head.path.dropFirst("/events/".count))
        if name.contains("/") { return nil }  // the route answers 404
        let refusal: Response
        do throws(MicroSSEError) {
            let channel = try ChannelName(name)
            guard let denied = authorize(head, .publish(channel: channel.rawValue)) else { return nil }
            refusal = denied
        } catch {
            refusal = .text(error.message, status: 400)
        }
        guard case .response(let decorated) = cors.decorate(.response(refusal), origin: cors.allowedOrigin(for: head))
        else { return refusal }
        return decorated
    }

    func handle(_ request: Request) -> TransportReply {
        let started = ContinuousClock.now
        let origin = cors.allowedOrigin(for: request)
        let reply =
            request.method == "OPTIONS" ? .response(cors.preflight(allowed: origin != nil)) : route(request)
        let decorated = cors.decorate(reply, origin: origin)
        if case .deferred(let later) = decorated {
            // Logged when it is sent, with the time it took.
            later.transform { [hub] in
                hub.answered(request, $0, since: started)
                return $0
            }
        } else {
            hub.answered(request, decorated, since: started)
        }
        return decorated
    }

    private func route(_ request: Request) -> TransportReply {
        let path = request.path
        let key = Hub.RouteKey(method: request.method, path: path)
        let (handler, stream) = hub.registry.withLock { ($0.routes[key], $0.streamRoutes[path]) }
        if let handler {
            if let refusal = authorize(request, .route(path: path)) { return .response(refusal) }
            return .response(checked(handler(request)))
        }
        let isGet = request.method == "GET" || request.method == "HEAD"
        if let stream, isGet {
            return privateStream(request, stream)
        }
        if let set = routeSet(for: path) {
            return set.handle(request, RouteSetHost(router: self))
        }
        if let route = routes.first(where: { $0.matches(path) }) {
            let allowed =
                route.methods.contains(request.method) || (request.method == "HEAD" && route.methods.contains("GET"))
            return allowed ? route.handle(request, self) : Self.methodNotAllowed(route.methods)
        }
        let methods = hub.registry.withLock { r in
            r.routes.keys.filter { $0.path == path }.map(\.method) + (r.streamRoutes[path] == nil ? [] : ["GET"])
        }
        if !methods.isEmpty { return Self.methodNotAllowed(methods.sorted()) }
        return .response(.text("not found: \(path)", status: 404))
    }

    /// Runs the guards, then the embedder's authorizer: the refusal, or nil to go on.
    func authorize(_ request: Request, _ access: Access) -> Response? {
        for g in guards {
            if let refusal = g.check(request, access) { return refusal }
        }
        if case .deny(let status, let reason) = hub.authorize(request, access) {
            return .text(reason, status: status)
        }
        return nil
    }

    static func methodNotAllowed(_ allowed: [String]) -> TransportReply {
        var r = Response.text("method not allowed", status: 405)
        r.headers.append(("Allow", allowed.joined(separator: ", ")))
        return .response(r)
    }

    /// The embedder's response, or a `500` saying why it cannot be sent (a header that could
    /// split the response).
    private func checked(_ response: Response) -> Response {
        do throws(MicroSSEError) {
            try response.validateHeaders()
            return response
        } catch {
            hub.logger.error("route response refused: \(error.message)")
            return .text("the route built an invalid response: \(error.message)", status: 500)
        }
    }

    // MARK: Streams

    private func privateStream(_ request: Request, _ handler: @Sendable (Request, Client) -> Void) -> TransportReply {
        if let refusal = authorize(request, .stream(path: request.path)) { return .response(refusal) }
        // HEAD: the stream's head, no stream (no slot taken, the handler not run).
        if request.method == "HEAD" { return .response(Response(status: 200, headers: Self.streamHeaders)) }
        guard let subscriber = admit(channels: []) else { return Self.full }
        let client = Client(request: request, subscriber: subscriber, hub: hub)
        handler(request, client)
        return openStream(client, headers: Self.streamHeaders)
    }

    /// A new subscriber when a stream slot is free (with the configured `retry:` queued), or nil.
    func admit(channels: [ChannelName]) -> Subscriber? {
        guard hub.admitStream() else { return nil }
        let subscriber = Subscriber(
            channels: channels, limit: hub.configuration.clientBufferBytes, pending: hub.pending)
        if let retry = hub.configuration.retryMilliseconds {
            subscriber.enqueue(Frame(bytes: EventEncoder.retry(milliseconds: retry), isEvent: false))
        }
        subscriber.enqueue(Self.opening)
        return subscriber
    }

    /// The first bytes of every stream, an empty comment: a proxy that holds a response's head
    /// until its body starts (nginx over HTTP/2 does) forwards it at once, so the browser's
    /// `open` comes now, not with the first event or heartbeat.
    static let opening = Frame(bytes: EventEncoder.comment(""), isEvent: false)

    /// The reply that opens an admitted stream; its slot is freed when the connection is gone.
    func openStream(_ client: Client, headers: [(name: String, value: String)]) -> TransportReply {
        hub.opened(client)
        // The closure holds the client alone (no context of its own to allocate per stream).
        return .stream(headers: headers, subscriber: client.subscriber, onClose: { client.hub?.closed(client) })
    }

    /// `503` with `Retry-After` when every stream slot is taken.
    static var full: TransportReply {
        var r = Response.text("too many subscribers", status: 503)
        r.headers.append(("Retry-After", "5"))
        return .response(r)
    }

    static let streamHeaders: [(name: String, value: String)] = [
        ("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
        ("X-Accel-Buffering", "no"),
    ]
}
