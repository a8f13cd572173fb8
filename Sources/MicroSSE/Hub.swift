import CoreMetrics
import Logging
import MicroSSECore
import MicroSSETransport
import Synchronization

/// What the server and its router share: the configuration, the broker, the registered routes
/// and callbacks, the counters, and stream admission. The router holds this, not the ``Server``,
/// so there is no cycle and nothing that outlives the server calls back into it.
final class Hub: Sendable {
    let configuration: ServerConfiguration
    let logger: Logger
    let broker: any EventBroker
    let registry = Mutex(Registry())
    let published = Atomic<Int>(0)
    let drops = Atomic<Int>(0)
    let disconnects = Atomic<Int>(0)
    /// Counters, gauges and the publish timer (``HubMetrics``).
    let metrics: HubMetrics
    /// The access log, when one is set (``Server/setAccessLog(_:)``).
    let accessLog = Mutex<AccessLog?>(nil)
    private let attached = Mutex(Attached())
    /// Set when ``Server/stop()`` begins: `/readyz` answers `503` from then on.
    let draining = Atomic<Bool>(false)
    /// Streams admitted and not yet closed (``ServerConfiguration/maxClients`` bounds it).
    let openStreams = Atomic<Int>(0)
    /// Token authorization, when ``ServerConfiguration/jwt`` is set.
    let jwt: JWTAuthority?
    /// The streams with bytes pending (every subscriber is made with it): what the ticker's
    /// stall pass and the largest-backlog gauge visit, instead of every stream.
    let pending = PendingStreams()

    /// Routes, stream routes, the authorizer and the connect/disconnect callbacks: what the
    /// embedding code registers, before or after start.
    struct Registry {
        var routes: [RouteKey: @Sendable (Request) -> Response] = [:]
        var streamRoutes: [String: @Sendable (Request, Client) -> Void] = [:]
        var authorizer: (@Sendable (Request, Access) -> Authorization)?
        var onConnect: [@Sendable (Client) -> Void] = []
        var onDisconnect: [@Sendable (Client) -> Void] = []
    }

    private struct Attached {
        weak var transport: HTTPTransport?
    }

    struct RouteKey: Hashable {
        let method: String
        let path: String
    }

    init(configuration: ServerConfiguration, logger: Logger, metricsFactory: (any MetricsFactory)? = nil) {
        self.configuration = configuration
        self.logger = logger
        self.jwt = JWTAuthority(configuration, logger: logger)
        let log = logger
        let metrics = HubMetrics(factory: metricsFactory)
        self.metrics = metrics
        let broker =
            configuration.brokerFactory?.makeBroker(
                historyCount: configuration.historyCount, historyBytes: configuration.historyBytes,
                historyTTLSeconds: configuration.historyTTLSeconds, log: { log.warning("\($0)") })
            ?? MemoryBroker(
                limits: .init(
                    historyCount: configuration.historyCount, historyBytes: configuration.historyBytes,
                    memoryBytes: configuration.historyMemoryBytes, ttlSeconds: configuration.historyTTLSeconds))
        self.broker = GapCountingBroker(base: broker, metrics: metrics)
    }

    /// The authorizer's answer (`.allow` when none is set).
    func authorize(_ request: Request, _ access: Access) -> Authorization {
        guard let authorizer = registry.withLock({ $0.authorizer }) else { return .allow }
        return authorizer(request, access)
    }

    /// Takes a stream slot; false when ``ServerConfiguration/maxClients`` are open.
    func admitStream() -> Bool {
        let limit = configuration.maxClients
        var current = openStreams.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = openStreams.compareExchange(
                expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// A stream opened: the connect callbacks run.
    func opened(_ client: Client) {
        logger.debug("client \(client.id) connected from \(client.request.remoteAddress) to \(client.request.path)")
        metrics.opened.increment()
        accessLog.withLock { $0 }?.streamOpened(client)
        for callback in registry.withLock({ $0.onConnect }) { callback(client) }
    }

    /// A stream's connection is gone: its slot is freed and the disconnect callbacks run.
    func closed(_ client: Client) {
        // Already detached when its connection was freed; a stream that never got one (a HEAD
        // request) must not stay listed in `pending` with its opening bytes.
        client.subscriber.detach()
        broker.unsubscribe(client.subscriber)
        openStreams.subtract(1, ordering: .relaxed)
        disconnects.add(1, ordering: .relaxed)
        metrics.disconnects.increment()
        if client.subscriber.wasDropped {
            drops.add(1, ordering: .relaxed)
            metrics.drops.increment()
        }
        logger.debug("client \(client.id) disconnected")
        accessLog.withLock { $0 }?.streamClosed(client)
        for callback in registry.withLock({ $0.onDisconnect }) { callback(client) }
    }

    /// Called once the transport is running: statistics read its counters from then on.
    func attach(_ transport: HTTPTransport) {
        attached.withLock { $0.transport = transport }
    }

    /// The most bytes any open stream has queued and not yet written (its peer's backlog).
    func largestQueueBytes() -> Int {
        pending.largestPendingBytes()
    }

    /// Counters since start.
    func statistics() -> Statistics {
        let transport = attached.withLock { $0.transport }
        return Statistics(
            clients: transport?.streamCount ?? 0,
            channels: broker.channelCount,
            published: published.load(ordering: .relaxed),
            delivered: transport?.deliveredEvents.load(ordering: .relaxed) ?? 0,
            bytes: transport?.deliveredBytes.load(ordering: .relaxed) ?? 0,
            drops: drops.load(ordering: .relaxed),
            disconnects: disconnects.load(ordering: .relaxed))
    }
}
