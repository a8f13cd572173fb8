internal import CMHDShim
internal import CMicroHTTPD
import Dispatch
import MicroSSECore
import MicroSSEWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The only code that touches libmicrohttpd: one internal polling thread with epoll (or a pool
/// of them), suspend/resume per stream, content-reader streaming with `MHD_SIZE_UNKNOWN`.
/// This file is the daemon's lifecycle; requests are in AccessHandler.swift, streams in
/// StreamResponder.swift.
///
/// Ownership: the transport passes itself to MHD as the access handler's `cls` (retained from
/// ``start()`` until after `MHD_stop_daemon` returns); each request's ``RequestContext`` is
/// retained in `con_cls` and released in the request-completed callback; each stream's
/// ``StreamSocket`` is retained as the response's `cls` and released in its free callback.
package final class HTTPTransport: Sendable {
    package let options: TransportOptions
    private weak let delegate: (any TransportDelegate)?

    private struct State {
        var daemon: DaemonHandle?
        var retainedSelf: Unmanaged<HTTPTransport>?
        var streams: [UInt64: Subscriber] = [:]
        /// Requests answered with a deferred reply, until the answer is sent (their connections
        /// are suspended until it is completed).
        var pending: [ObjectIdentifier: DeferredReply] = [:]
        var closing = false
        /// Signalled when the last stream closes, and no request is pending, while closing
        /// (``stop()`` waits on it).
        var drained: DispatchSemaphore?
        /// Shuts down connections whose request is past its deadline (slowloris); its cancel
        /// handler frees the tracker, so it is cancelled only after `MHD_stop_daemon`.
        var reaper: DispatchSourceTimer?
        /// The peer watcher and the suspended streams' writer, while started.
        var threads: StreamThreads?
    }
    private let state = Mutex(State())

    /// Event frames and bytes handed to sockets by stream readers.
    package let deliveredEvents = Atomic<Int>(0)
    package let deliveredBytes = Atomic<Int>(0)
    /// Header lines of this transport's stream responses freed once their head was built.
    package let streamHeaderLinesFreed = Atomic<Int>(0)

    /// The bound port once started.
    package let boundPort = Atomic<UInt16>(0)

    /// Every stream's heartbeat slot (the ticker's heartbeat pass, ``heartbeatPass(_:)``).
    package let heartbeats = HeartbeatSlots()

    package init(options: TransportOptions, delegate: any TransportDelegate) {
        self.options = options
        self.delegate = delegate
        heartbeats.setWriter { [weak self] fd, bytes in self?.writeHeartbeat(fd: fd, bytes) ?? .unavailable }
    }

    /// Heartbeats this transport wrote straight to a suspended stream's socket: the ones that
    /// cost no resume.
    package let heartbeatsWrittenDirectly = Atomic<Int>(0)
    /// Events this transport wrote straight to a suspended stream's socket (see
    /// ``SuspendedWriter``).
    package let eventsWrittenDirectly = Atomic<Int>(0)
    /// Direct chunks the socket took only part of (their rest was sent once it had room).
    package let chunksCutShort = Atomic<Int>(0)

    /// The open streams' subscribers, for periodic work.
    package func streams() -> [Subscriber] { state.withLock { Array($0.streams.values) } }

    /// Connections libmicrohttpd holds open (streams, requests, handshakes, idle keep-alives);
    /// 0 when stopped.
    package var openConnections: Int {
        state.withLock { s in s.daemon.map { Int(msse_shim_daemon_connections($0.pointer)) } ?? 0 }
    }

    /// Number of open streams.
    package var streamCount: Int { state.withLock { $0.streams.count } }

    /// Requests answered with a deferred reply whose answer is not yet sent.
    package var pendingCount: Int { state.withLock { $0.pending.count } }

    /// The open stream of subscriber `id`, if any.
    func stream(id: UInt64) -> Subscriber? { state.withLock { $0.streams[id] } }

    /// The peer watcher, while started (nil if the kernel refused one).
    var peerWatcher: PeerWatcher? { state.withLock { $0.threads?.watcher } }

    /// The suspended streams' writer, while started (nil if the kernel refused one).
    var suspendedWriter: SuspendedWriter? { state.withLock { $0.threads?.writer } }

    /// Both, for a new stream (one lock).
    var streamThreads: StreamThreads? { state.withLock { $0.threads } }

    /// Idle streams' write regions this transport's peer watcher gave back to the kernel, and
    /// their bytes.
    package var releasedIdleBuffers: (regions: Int, bytes: Int) {
        guard let watcher = peerWatcher else { return (0, 0) }
        return (watcher.releasedRegions.load(ordering: .relaxed), watcher.releasedBytes.load(ordering: .relaxed))
    }

    /// Binds and starts serving. Throws `.startFailed` with libmicrohttpd's reason.
    package func start() throws(MicroSSEError) {
        if options.raiseFileLimit { raiseFileLimit(to: options.connectionLimit + 64) }
        // libmicrohttpd's timeout counts idle time only; a request must also arrive in full
        // within the same number of seconds (msse_shim_tracker: slowloris, slow bodies). The
        // tracker's record of each connection also carries the raw request target's checks, and
        // the per-address counts of the per-address limit, so there is one whatever the options.
        let tracker = msse_shim_tracker_create(
            UInt32(clamping: options.connectionTimeout), UInt32(clamping: options.perIPConnectionLimit),
            UInt32(clamping: options.connectionLimit)
        ).map { TrackerHandle(pointer: $0) }
        let retained = Unmanaged.passRetained(self)
        var error = [CChar](repeating: 0, count: 256)
        let daemon: OpaquePointer? = withOptionalCString(options.host) { host in
            withOptionalCString(options.tlsCertificatePEM) { cert in
                withOptionalCString(options.tlsKeyPEM) { key in
                    var o = msse_shim_daemon_options()
                    // Turbo puts a new connection straight into the ready list, where a TLS
                    // handshake never leaves it (GnuTLS reads the socket itself, so libmicrohttpd
                    // never sees it run dry): the polling loop spins while a client sends nothing.
                    // Without it the connection waits in epoll for its first bytes.
                    o.flags =
                        MHD_USE_EPOLL_INTERNAL_THREAD.rawValue | MHD_ALLOW_SUSPEND_RESUME.rawValue
                        | (options.tlsCertificatePEM == nil ? MHD_USE_TURBO.rawValue : 0)
                    o.host = host
                    o.port = options.port
                    o.connection_limit = UInt32(clamping: options.connectionLimit)
                    o.connection_memory_limit = options.connectionMemoryLimit
                    o.connection_timeout = UInt32(clamping: options.connectionTimeout)
                    o.thread_pool_size = UInt32(clamping: options.threadPoolSize)
                    o.per_ip_connection_limit = UInt32(clamping: options.perIPConnectionLimit)
                    o.tls_cert_pem = cert
                    o.tls_key_pem = key
                    o.access_handler = accessHandler
                    o.access_handler_cls = retained.toOpaque()
                    o.completed = requestCompleted
                    o.completed_cls = retained.toOpaque()
                    o.logger = mhdLog
                    o.logger_cls = retained.toOpaque()
                    o.tracker = tracker?.pointer
                    return msse_shim_start_daemon(&o, &error, error.count)
                }
            }
        }
        guard let daemon else {
            retained.release()
            if let tracker { msse_shim_tracker_destroy(tracker.pointer) }
            throw MicroSSEError(.startFailed, error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        boundPort.store(msse_shim_daemon_port(daemon), ordering: .releasing)
        let watcher = PeerWatcher(lookup: { [weak self] id in self?.stream(id: id) })
        if watcher == nil { log("peer watcher unavailable: closed peers are noticed on their next write") }
        let writer = SuspendedWriter(lookup: { [weak self] id in self?.stream(id: id) })
        if writer == nil { log("suspended-stream writer unavailable: every event resumes its stream") }
        state.withLock {
            $0.threads = StreamThreads(watcher: watcher, writer: writer)
            $0.daemon = DaemonHandle(pointer: daemon)
            $0.retainedSelf = retained
            $0.reaper = tracker.map { startReaper($0) }
        }
    }

    private func startReaper(_ tracker: TrackerHandle) -> DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        let interval = DispatchTimeInterval.milliseconds(options.connectionTimeout > 2 ? 1_000 : 250)
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { _ = msse_shim_reap_slow_requests(tracker.pointer) }
        timer.setCancelHandler { msse_shim_tracker_destroy(tracker.pointer) }
        timer.resume()
        return timer
    }

    /// Graceful stop in the order libmicrohttpd needs (docs/DESIGN.md, shutdown): refuse new
    /// streams, stop accepting, answer every pending request `503` and end every stream
    /// (resuming suspended connections), wait until the last stream has closed and the last
    /// pending request was answered (or the drain timeout), then stop the daemon. Idempotent;
    /// returns when libmicrohttpd's threads have exited. On one of libmicrohttpd's own threads
    /// (which the stop would have to join) it only starts the stop, on a thread of its own.
    package func stop() {
        if StopThread.isDaemonThread {
            StopThread.detach { self.stop() }
            return
        }
        let drained = DispatchSemaphore(value: 0)
        let (daemon, streams, pending) = state.withLock { s -> (DaemonHandle?, [Subscriber], [DeferredReply]) in
            s.closing = true
            if !s.streams.isEmpty || !s.pending.isEmpty { s.drained = drained }
            return (s.daemon, Array(s.streams.values), Array(s.pending.values))
        }
        guard let daemon else { return }
        let listenSocket = MHD_quiesce_daemon(daemon.pointer)
        // A connection still suspended at MHD_stop_daemon aborts the process: each pending
        // request is answered (first completion wins), which resumes it.
        for reply in pending { reply.complete(with: .response(Self.stopping)) }
        for sub in streams { sub.finish() }
        if !streams.isEmpty || !pending.isEmpty {
            _ = drained.wait(timeout: .now() + .milliseconds(max(0, options.drainTimeoutMilliseconds)))
        }
        // The writer first (no write or resume of it may still be under way), then a stream
        // whose socket never took the rest of a direct chunk is still suspended (its finish
        // waits for that rest): give up on it, which resumes it so its reader closes it.
        state.withLock { $0.threads?.writer }?.stop()
        for sub in streams { sub.failIfWriteUnfinished() }
        // Any stream still open is not suspended (finish() resumed it and its reader no longer
        // suspends), nor is any request still pending (its completion resumed it), so stopping
        // the daemon now is safe; it closes those connections.
        let (retained, reaper, watcher, writer) = state.withLock {
            s -> (Unmanaged<HTTPTransport>?, DispatchSourceTimer?, PeerWatcher?, SuspendedWriter?) in
            defer {
                s.daemon = nil
                s.retainedSelf = nil
                s.reaper = nil
                s.drained = nil
                s.threads = nil
            }
            return (s.retainedSelf, s.reaper, s.threads?.watcher, s.threads?.writer)
        }
        MHD_stop_daemon(daemon.pointer)
        reaper?.cancel()  // after the daemon: its cancel handler frees the tracker
        watcher?.stop()  // after the daemon: every free callback has removed its registration
        writer?.release()  // after the daemon: every free callback has unwatched its socket
        if listenSocket >= 0 { close(listenSocket) }
        retained?.release()
    }

    // MARK: - Used by the request and stream callbacks (libmicrohttpd's threads)

    func log(_ message: String) {
        delegate?.log(message)
    }

    static var stopping: Response {
        var r = Response.text("server is stopping", status: 503)
        r.headers.append(("Retry-After", "1"))
        return r
    }

    /// The layer above's answer, or a `503` once it is gone.
    func reply(to request: Request) -> TransportReply {
        guard let delegate else { return .response(.text("server is stopping", status: 503)) }
        return delegate.handle(request)
    }

    /// Parks a deferred reply in the pending table (in the access handler): the reply when it is
    /// already complete (no suspend), a `503` once stopping, else nil with the connection
    /// suspended until the completion resumes it.
    func park(
        _ reply: DeferredReply, suspend: () -> Void, resume: @escaping @Sendable () -> Void
    ) -> TransportReply? {
        let accepted = state.withLock { s in
            guard !s.closing else { return false }
            s.pending[ObjectIdentifier(reply)] = reply
            return true
        }
        guard accepted else {
            reply.abandon()
            return .response(Self.stopping)
        }
        return reply.park(suspend: suspend, resume: resume)
    }

    /// Removes a reply from the pending table (sent, its stream registered, or its connection
    /// gone).
    func unpark(_ reply: DeferredReply) {
        let drained = state.withLock { s -> DispatchSemaphore? in
            guard s.pending.removeValue(forKey: ObjectIdentifier(reply)) != nil else { return nil }
            return s.streams.isEmpty && s.pending.isEmpty ? s.drained : nil
        }
        drained?.signal()
    }

    /// The layer above's verdict on a request's head, or nil (go on) once it is gone.
    func admit(_ head: Request) -> Response? {
        delegate?.admit(head)
    }

    /// Registers a stream; false once stopping (the stream must then be refused).
    func register(_ subscriber: Subscriber) -> Bool {
        state.withLock { s in
            guard !s.closing else { return false }
            s.streams[subscriber.id] = subscriber
            return true
        }
    }

    /// Forgets a stream whose connection is gone.
    func streamClosed(_ subscriber: Subscriber) {
        let drained = state.withLock { s -> DispatchSemaphore? in
            s.streams.removeValue(forKey: subscriber.id)
            return s.streams.isEmpty && s.pending.isEmpty ? s.drained : nil
        }
        drained?.signal()
    }

    private func raiseFileLimit(to wanted: Int) {
        var limit = rlimit()
        guard getrlimit(rlimitNoFile, &limit) == 0 else { return }
        let target = min(rlim_t(wanted), limit.rlim_max)
        if limit.rlim_cur < target {
            limit.rlim_cur = target
            _ = setrlimit(rlimitNoFile, &limit)
        }
    }
}

#if canImport(Glibc)
    private let rlimitNoFile = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
#endif

/// libmicrohttpd's daemon pointer. Sendable because MHD's daemon API is thread-safe for the
/// calls MicroSSE makes across threads (quiesce, stop), and ``HTTPTransport`` serialises them.
private struct DaemonHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// The request-deadline tracker, used by the reaper timer. Sendable because every shim function
/// taking it locks the tracker's own mutex; it is freed once, by the timer's cancel handler.
private struct TrackerHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

private func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}

private let mhdLog: msse_shim_log_cb = { cls, message in
    guard let cls, let message else { return }
    Unmanaged<HTTPTransport>.fromOpaque(cls).takeUnretainedValue().log(String(cString: message))
}
