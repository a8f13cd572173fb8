import CoreMetrics
import Dispatch
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
    /// The configured broker (the one a ``ServerConfiguration/brokerFactory`` made, or the
    /// in-memory one), without the hub's counting wrapper: tests await its state.
    package var broker: any EventBroker { (hub.broker as? GapCountingBroker)?.base ?? hub.broker }
    private let lifecycle = Mutex(Lifecycle())

    private struct Lifecycle {
        var transport: HTTPTransport?
        var router: Router?
        var ticker: Ticker?
        /// A stop has begun, on the thread `stopper` (``StopThread/current``).
        var stopped = false
        var stopper: UInt?
        /// A stop was handed to a thread of its own (``beginStop()``: once per server).
        var stopHandedOff = false
        /// The stop has finished: the port is released and every stream has ended.
        var finished = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        /// Threads waiting in ``Server/stop()`` for a stop under way on another thread.
        var blocked: [DispatchSemaphore] = []
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
    /// Throws `.invalidArgument` unless `path` starts with `/`.
    public func addRoute(
        _ method: String = "GET", _ path: String, handler: @escaping @Sendable (Request) -> Response
    ) throws(MicroSSEError) {
        try Self.checkRoutePath(path)
        hub.registry.withLock { $0.routes[Hub.RouteKey(method: method, path: path)] = handler }
    }

    /// Serves a private `text/event-stream` at `GET path`: `handler` gets a ``Client`` to send
    /// events to that connection alone (for as long as it stays open). Throws `.invalidArgument`
    /// unless `path` starts with `/`.
    public func addStreamRoute(
        _ path: String, handler: @escaping @Sendable (Request, Client) -> Void
    ) throws(MicroSSEError) {
        try Self.checkRoutePath(path)
        hub.registry.withLock { $0.streamRoutes[path] = handler }
    }

    /// A route's path is what a request's path is compared with: it starts with `/`.
    private static func checkRoutePath(_ path: String) throws(MicroSSEError) {
        guard path.hasPrefix("/") else {
            throw MicroSSEError(.invalidArgument, "route path must start with '/': \(path.debugDescription)")
        }
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
                try router.startRouteSets()
                try transport.start()
            } catch {
                router.stopRouteSets()
                hub.broker.shutdown()
                throw error
            }
            l.transport = transport
            l.router = router
            hub.attach(transport)
            l.ticker = Ticker(
                heartbeatSeconds: config.heartbeatSeconds, writeTimeoutSeconds: config.writeTimeoutSeconds,
                pending: hub.pending
            ) { [weak transport] frame in transport?.heartbeatPass(frame) }
            hub.metrics.startSampling(hub)
        }
        let scheme = config.tls == nil ? "http" : "https"
        let host = config.host.contains(":") ? "[\(config.host)]" : config.host
        hub.logger.info("microsse listening on \(scheme)://\(host):\(port)")
    }

    /// The running transport (nil before ``start()``), for the package's tests.
    package var transport: HTTPTransport? { lifecycle.withLock { $0.transport } }

    /// The bound port (useful with port 0), or 0 before ``start()`` and once ``stop()`` has
    /// finished (the port is released then).
    public var port: UInt16 {
        lifecycle.withLock { l in l.finished ? 0 : l.transport?.boundPort.load(ordering: .acquiring) ?? 0 }
    }

    /// Stops gracefully: refuses new requests, ends every stream with its final chunk (waiting at
    /// most ``ServerConfiguration/shutdownDrainMilliseconds``), then releases the port, and
    /// returns once stopped. Idempotent: a call while a stop is under way on another thread waits
    /// for it. Callable from any thread.
    ///
    /// From a handler, the authorizer or a connect/disconnect callback (libmicrohttpd's threads,
    /// which the stop joins) it only begins the stop, on a thread of its own, and returns at once;
    /// ``waitUntilStopped()`` and ``run()`` return when it is done. In async code, prefer
    /// ``shutdown()``, which does not hold a cooperative thread while the streams drain.
    public func stop() {
        if StopThread.isDaemonThread {
            beginStop()
            return
        }
        enum Role {
            case perform(HTTPTransport?, Ticker?)
            case wait(DispatchSemaphore)
            case done
        }
        let me = StopThread.current
        let role = lifecycle.withLock { l -> Role in
            if l.finished { return .done }
            if l.stopped {
                // A disconnect callback run by this very stop: it is under way already.
                if l.stopper == me { return .done }
                let wait = DispatchSemaphore(value: 0)
                l.blocked.append(wait)
                return .wait(wait)
            }
            l.stopped = true
            l.stopper = me
            defer { l.ticker = nil }
            return .perform(l.transport, l.ticker)
        }
        switch role {
        case .done: return
        case .wait(let semaphore): semaphore.wait()
        case .perform(let transport, let ticker): performStop(transport, ticker)
        }
    }

    /// Stops like ``stop()``, with the waiting done on a thread of its own: the calling task is
    /// suspended, not its thread, while the streams drain.
    public func shutdown() async {
        beginStop()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            if !enqueueWaiter(c) { c.resume() }
        }
    }

    /// Whether the calling thread is one of libmicrohttpd's (a handler, the authorizer, a
    /// connect/disconnect callback): a thread that must not wait for a stop.
    package static var onCallbackThread: Bool { StopThread.isDaemonThread }

    /// Runs `body` on a thread of its own (the C shell's destroy from a callback).
    package static func detach(_ body: @escaping @Sendable () -> Void) { StopThread.detach(body) }

    /// Begins ``stop()`` on a thread of its own and returns at once (once per server).
    func beginStop() {
        let first = lifecycle.withLock { l in
            defer { l.stopHandedOff = true }
            return !l.stopped && !l.stopHandedOff
        }
        if first { StopThread.detach { self.stop() } }
    }

    /// Lists `c` to be resumed when the stop finishes; false (not listed) if it has.
    private func enqueueWaiter(_ c: CheckedContinuation<Void, Never>) -> Bool {
        lifecycle.withLock { l in
            if l.finished { return false }
            l.waiters.append(c)
            return true
        }
    }

    private func performStop(_ transport: HTTPTransport?, _ ticker: Ticker?) {
        ticker?.cancel()
        hub.draining.store(true, ordering: .relaxed)
        if let transport {
            lifecycle.withLock { $0.router }?.stopRouteSets()
            hub.broker.shutdown()
            spreadReconnects(transport.streams())
            transport.stop()
            // Listed streams hold the set and the set holds them: every stream has ended now.
            _ = hub.pending.takeAll()
            hub.metrics.stopSampling(hub)
            hub.logger.info("microsse stopped")
        }
        let (waiters, blocked) = lifecycle.withLock { l in
            l.finished = true
            l.router = nil
            defer {
                l.waiters = []
                l.blocked = []
            }
            return (l.waiters, l.blocked)
        }
        for w in waiters { w.resume() }
        for b in blocked { b.signal() }
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
    /// every stream then ends with its final chunk before this returns. The stop a cancellation
    /// or a graceful shutdown begins runs on a thread of its own, never on a cooperative thread.
    public func run() async throws {
        try start()
        await withGracefulShutdownHandler {
            await waitUntilStopped()
        } onGracefulShutdown: {
            self.beginStop()
        }
    }

    /// Returns once ``stop()`` has finished (at once if it already has). Cancelling the waiting
    /// task stops the server (on a thread of its own: the cancelling thread does not wait).
    public func waitUntilStopped() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                if !enqueueWaiter(c) { c.resume() }
            }
        } onCancel: {
            beginStop()
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
