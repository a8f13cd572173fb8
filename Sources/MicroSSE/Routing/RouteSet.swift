import MicroSSECore
import MicroSSETransport

/// Routes another module adds to the hub when it is configured (`MicroSSEMercure` does, through
/// its `ServerConfiguration.mercure`). Stored in ``ServerConfiguration/routeSetFactory``.
/// ``ServerConfiguration/validate()`` asks it too (``ConfigurationValidating``), last.
package protocol RouteSetFactory: ConfigurationValidating, Sendable {
    /// The route set of a starting server, or nil when the settings do not enable one.
    func makeRouteSet(_ configuration: ServerConfiguration) -> (any RouteSet)?
}

/// A set of exact paths served beside the built-in routes (after the embedder's own routes).
/// It keeps no reference to the router: what it may do with the hub comes with each call.
package protocol RouteSet: Sendable {
    /// The paths answered (exactly).
    var paths: [String] { get }
    /// Response headers cross-origin pages may read, added to `Access-Control-Expose-Headers`.
    var exposedHeaders: [String] { get }
    /// Refuses a request on its head, before its body is read (a publish without a valid
    /// token, say), or nil to go on.
    func admit(_ head: Request, _ host: RouteSetHost) -> Response?
    /// Answers a request for one of ``paths`` (any method but `OPTIONS`, which CORS answers).
    func handle(_ request: Request, _ host: RouteSetHost) -> TransportReply
    /// Paths answered besides ``paths``: every path under one of these (`prefix/...`).
    var pathPrefixes: [String] { get }
    /// Called once the broker has started, before the port is bound (a route set following the
    /// broker subscribes here); an error fails the server's start.
    func start(_ host: RouteSetHost) throws(MicroSSEError)
    /// Called once when the server stops, before the broker shuts down.
    func stop()
}

extension RouteSet {
    package var pathPrefixes: [String] { [] }
    package func start(_ host: RouteSetHost) throws(MicroSSEError) {}
    package func stop() {}
}

/// What a route set may use of the hub, for the length of one call.
package struct RouteSetHost: Sendable {
    let router: Router

    /// The server's configuration.
    package var configuration: ServerConfiguration { router.hub.configuration }

    /// The site guard (allowed hosts; for a publish, the `Origin` check), then the embedder's
    /// authorizer with `access`: the refusal, or nil. Tokens are the route set's own business.
    package func authorize(_ request: Request, _ access: Access, publishing: Bool) -> Response? {
        let site = SiteGuard(
            allowedHosts: configuration.allowedHosts, corsOrigins: configuration.corsOrigins)
        if let refusal = site.check(request, publishing ? .publish(channel: "") : access) { return refusal }
        if case .deny(let status, let reason) = router.hub.authorize(request, access) {
            return .text(reason, status: status)
        }
        return nil
    }

    /// A new subscriber of no channel when a stream slot is free (with the configured `retry:`
    /// and the opening comment queued), or nil: answer ``full`` then.
    package func admitSubscriber() -> Subscriber? {
        router.admit(channels: [])
    }

    /// `503` with `Retry-After`: every stream slot is taken.
    package var full: TransportReply { Router.full }

    /// The stream headers every stream sends (`Content-Type: text/event-stream`, no caching).
    package var streamHeaders: [(name: String, value: String)] { Router.streamHeaders }

    /// Opens an admitted stream; `onClose` runs once its connection is gone, after the hub's
    /// disconnect callbacks. With `expiresAt` (seconds since the epoch), the stream is ended then.
    package func openStream(
        _ subscriber: Subscriber, _ request: Request, headers: [(name: String, value: String)],
        expiresAt: Int?, onClose: @escaping @Sendable () -> Void
    ) -> TransportReply {
        let hub = router.hub
        let client = Client(request: request, subscriber: subscriber, hub: hub)
        if let expiresAt, let jwt = hub.jwt { jwt.expiry.watch(client, exp: expiresAt) }
        hub.opened(client)
        return .stream(
            headers: headers, subscriber: subscriber,
            onClose: {
                client.hub?.closed(client)
                onClose()
            })
    }

    /// The server's broker: what a route set that follows it (a cluster's shared log) subscribes
    /// to and publishes through.
    package var broker: any EventBroker { router.hub.broker }

    /// Logs a warning in the server's log.
    package func warn(_ message: String) {
        router.hub.logger.warning("\(message)")
    }

    /// Whether the broker is shared with other hubs (``ServerConfiguration/brokerFactory``).
    package var isClustered: Bool { configuration.brokerFactory != nil }

    /// Publishes through the hub's one publish path (its checks, the broker, the counters).
    package func publish(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<PublishReceipt, MicroSSEError>) -> Void
    ) {
        router.hub.publish(event, to: channel, completion: completion)
    }

    /// Counts a publish that began at `started` in the statistics and metrics, as a channel
    /// publish is counted.
    package func countPublish(since started: ContinuousClock.Instant) {
        router.hub.countPublish(since: started)
    }
}
