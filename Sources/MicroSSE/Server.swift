import CoreMetrics
import Logging
import MicroSSECore
import MicroSSETransport
import MicroSSEWire
import ServiceLifecycle
import Synchronization

/// An embeddable Server-Sent Events server on libmicrohttpd.
///
/// ```swift
/// var config = ServerConfiguration()
/// config.port = 0
/// let server = try Server(validating: config)
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
    public var configuration: ServerConfiguration { hub.configuration }
    let hub: Hub
    private let lifecycle = Mutex(Lifecycle())

    private struct Lifecycle {
        var transport: HTTPTransport?
        var router: Router?
        var ticker: Ticker?
        var stopped = false
        var finished = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Creates a server; nothing is bound until ``start()``, which throws if `configuration`
    /// does not pass ``ServerConfiguration/validate()``.
    ///
    /// Its metrics go to `metricsFactory`, or when nil to the swift-metrics backend bootstrapped
    /// by then (`MetricsSystem.bootstrap`; bootstrap before creating the server), and always to
    /// the server's own Prometheus registry that `GET /metrics` renders.
    public init(
        configuration: ServerConfiguration = ServerConfiguration(), logger: Logger? = nil,
        metricsFactory: (any MetricsFactory)? = nil
    ) {
        hub = Hub(
            configuration: configuration, logger: logger ?? Logger(label: "microsse"), metricsFactory: metricsFactory)
    }

    /// Creates a server after checking `configuration` with ``ServerConfiguration/validate()``.
    public convenience init(
        validating configuration: ServerConfiguration, logger: Logger? = nil,
        metricsFactory: (any MetricsFactory)? = nil
    ) throws(MicroSSEError) {
        try configuration.validate()
        self.init(configuration: configuration, logger: logger, metricsFactory: metricsFactory)
    }

    // MARK: Routes and callbacks

    /// Serves `handler`'s response for `method path` (exact path match), e.g. a page at `/`.
    public func addRoute(_ method: String = "GET", _ path: String, handler: @escaping @Sendable (Request) -> Response) {
        hub.registry.withLock { $0.routes[Hub.RouteKey(method: method, path: path)] = handler }
    }

    /// Serves a private `text/event-stream` at `GET path`: `handler` gets a ``Client`` to send
    /// events to that connection alone (for as long as it stays open).
    public func addStreamRoute(_ path: String, handler: @escaping @Sendable (Request, Client) -> Void) {
        hub.registry.withLock { $0.streamRoutes[path] = handler }
    }

    /// Decides per request whether a subscriber or publisher may proceed; runs before any byte
    /// of the response is sent. Not consulted for `/healthz` and CORS preflights.
    public func setAuthorizer(_ authorizer: @escaping @Sendable (Request, Access) -> Authorization) {
        hub.registry.withLock { $0.authorizer = authorizer }
    }

    /// Adds a callback run when a stream opens (on libmicrohttpd's thread).
    public func onConnect(_ callback: @escaping @Sendable (Client) -> Void) {
        hub.registry.withLock { $0.onConnect.append(callback) }
    }

    /// Adds a callback run when a stream has closed, for any reason (on libmicrohttpd's thread,
    /// or on the thread calling ``stop()``).
    public func onDisconnect(_ callback: @escaping @Sendable (Client) -> Void) {
        hub.registry.withLock { $0.onDisconnect.append(callback) }
    }

    // MARK: Lifecycle

    /// Binds and starts serving on libmicrohttpd's thread; returns at once.
    /// Throws `.invalidArgument` if the configuration does not validate, `.invalidState` if
    /// already started, `.startFailed` if the address cannot be bound, `.unavailable` if the
    /// configured Redis cannot be reached.
    public func start() throws(MicroSSEError) {
        let config = hub.configuration
        try config.validate()
        let router = Router(hub: hub)
        let transport = HTTPTransport(options: config.transportOptions, delegate: router)
        try lifecycle.withLock { (l: inout Lifecycle) throws(MicroSSEError) in
            guard l.transport == nil, !l.stopped else {
                throw MicroSSEError(.invalidState, "the server was already started")
            }
            try hub.broker.start()
            do throws(MicroSSEError) {
                try transport.start()
            } catch {
                hub.broker.shutdown()
                throw error
            }
            l.transport = transport
            l.router = router
            hub.attach(transport)
            hub.heartbeats.setWriter { [weak transport] fd, bytes in
                transport?.writeHeartbeat(fd: fd, bytes) ?? .unavailable
            }
            l.ticker = Ticker(
                heartbeatSeconds: config.heartbeatSeconds, writeTimeoutSeconds: config.writeTimeoutSeconds,
                pending: hub.pending, heartbeats: hub.heartbeats)
            hub.metrics.startSampling(hub)
        }
        let scheme = config.tls == nil ? "http" : "https"
        let host = config.host.contains(":") ? "[\(config.host)]" : config.host
        hub.logger.info("microsse listening on \(scheme)://\(host):\(port)")
    }

    /// The running transport (nil before ``start()``), for the package's tests.
    package var transport: HTTPTransport? { lifecycle.withLock { $0.transport } }

    /// The bound port (useful with port 0), or 0 before ``start()``.
    public var port: UInt16 {
        lifecycle.withLock { $0.transport?.boundPort.load(ordering: .acquiring) ?? 0 }
    }

    /// Stops gracefully: refuses new requests, ends every stream with its final chunk (waiting at
    /// most ``ServerConfiguration/shutdownDrainMilliseconds``), then releases the port.
    /// Idempotent; callable from any thread (not from a handler).
    public func stop() {
        let (transport, ticker) = lifecycle.withLock { l in
            let first = !l.stopped
            l.stopped = true
            defer { l.ticker = nil }
            return (first ? l.transport : nil, l.ticker)
        }
        ticker?.cancel()
        hub.draining.store(true, ordering: .relaxed)
        if let transport {
            hub.broker.shutdown()
            spreadReconnects(transport.streams())
            transport.stop()
            // Listed streams hold the set and the set holds them: every stream has ended now.
            _ = hub.pending.takeAll()
            hub.metrics.stopSampling(hub)
            hub.logger.info("microsse stopped")
        }
        let waiters = lifecycle.withLock { l in
            l.finished = true
            l.router = nil
            defer { l.waiters = [] }
            return l.waiters
        }
        for w in waiters { w.resume() }
    }

    /// Queues a `retry:` with a random delay within ``ServerConfiguration/drainWindowMilliseconds``
    /// on every stream, before its final chunk: browsers come back spread over the window.
    private func spreadReconnects(_ streams: [Subscriber]) {
        let window = hub.configuration.drainWindowMilliseconds
        guard window > 0 else { return }
        for sub in streams {
            let delay = Int.random(in: 0...window)
            sub.enqueue(Frame(bytes: EventEncoder.retry(milliseconds: delay), isEvent: false))
        }
    }

    /// Starts the server and returns when it has stopped: by ``stop()``, by cancelling the task,
    /// or by a graceful shutdown of the `ServiceGroup` running it (a signal such as SIGTERM):
    /// every stream then ends with its final chunk before this returns.
    public func run() async throws {
        try start()
        await withGracefulShutdownHandler {
            await waitUntilStopped()
        } onGracefulShutdown: {
            self.stop()
        }
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
    /// Thread-safe. Throws `.invalidChannel`, `.payloadTooLarge` when the data is larger than
    /// ``ServerConfiguration/maxPublishBytes``, or `.unavailable` once stopping.
    @discardableResult
    public func publish(_ event: Event, to channel: String) throws(MicroSSEError) -> String {
        try publish(event, to: ChannelName(channel))
    }

    /// Publishes `data` (validated like ``Event``) to `channel`; returns the event's id.
    @discardableResult
    public func publish(
        _ data: String, event: String? = nil, id: String? = nil, to channel: String
    ) throws(MicroSSEError) -> String {
        try publish(Event(data: data, event: event, id: id), to: channel)
    }

    /// Counters since start.
    public var statistics: Statistics { hub.statistics() }

    func publish(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> String {
        try hub.publish(event, to: channel)
    }
}

extension Hub {
    /// Every publish goes through here: the checks below, the broker, the counter.
    func publish(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> String {
        try admit(event)
        let started = ContinuousClock.now
        let id = try broker.publish(event, to: channel)
        countPublish(since: started)
        return id
    }

    /// ``publish(_:to:)`` for the HTTP route: returns at once, `completion` gets the id or the
    /// error (from a broker's worker thread when the broker is asynchronous).
    func publish(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<String, MicroSSEError>) -> Void
    ) {
        do throws(MicroSSEError) {
            try admit(event)
        } catch {
            completion(.failure(error))
            return
        }
        let started = ContinuousClock.now
        broker.publish(event, to: channel) { [self] result in
            if case .success = result { countPublish(since: started) }
            completion(result)
        }
    }

    /// What a publisher may send: data within ``ServerConfiguration/maxPublishBytes``, and no
    /// reserved event name (MicroSSE's own control events, `error` and `open`).
    private func admit(_ event: Event) throws(MicroSSEError) {
        let limit = configuration.maxPublishBytes
        guard event.data.utf8.count <= limit else {
            throw MicroSSEError(.payloadTooLarge, "event data is larger than \(limit) bytes")
        }
        if let name = event.event, let reason = ControlEvents.reservedReason(name) {
            throw MicroSSEError(.invalidEventName, reason)
        }
    }

    private func countPublish(since started: ContinuousClock.Instant) {
        let elapsed = started.duration(to: .now)
        published.add(1, ordering: .relaxed)
        metrics.published.increment()
        metrics.publishDuration.recordNanoseconds(
            elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
