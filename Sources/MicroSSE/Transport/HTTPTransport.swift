internal import CMHDShim
internal import CMicroHTTPD
import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What the layer above answers to a request.
enum TransportReply: Sendable {
    /// A complete response.
    case response(Response)
    /// A `text/event-stream` response fed from `subscriber`'s queue. `onClose` runs exactly once,
    /// when the stream's connection is gone (or at once, if the stream is refused).
    case stream(headers: [(name: String, value: String)], subscriber: Subscriber, onClose: @Sendable () -> Void)
}

/// The layer above the transport: turns requests into replies. Called on libmicrohttpd's threads;
/// must not block.
protocol TransportDelegate: AnyObject, Sendable {
    func handle(_ request: Request) -> TransportReply
    func log(_ message: String)
}

/// Options of the libmicrohttpd daemon.
struct TransportOptions: Sendable {
    var host: String
    var port: UInt16
    var connectionLimit: Int
    var connectionMemoryLimit: Int
    var connectionTimeout: Int
    var blockSize: Int
    var threadPoolSize: Int
    var perIPConnectionLimit: Int
    var maxStreams: Int
    var maxBodyBytes: Int
    var tlsCertificatePEM: String?
    var tlsKeyPEM: String?
    /// How long ``HTTPTransport/stop(drainTimeout:)`` waits for streams to flush their final chunk.
    var drainTimeoutMilliseconds: Int
}

/// The only code that touches libmicrohttpd: one internal polling thread with epoll,
/// suspend/resume per stream, content-reader streaming with `MHD_SIZE_UNKNOWN`.
///
/// Ownership: the transport passes itself to MHD as the access handler's `cls` (retained from
/// ``start()`` until after `MHD_stop_daemon` returns); each request's ``RequestContext`` is retained
/// in `con_cls` and released in the request-completed callback; each stream's ``StreamContext``
/// is retained as the response's `cls` and released in the response's free callback.
final class HTTPTransport: Sendable {
    let options: TransportOptions
    private weak let delegate: (any TransportDelegate)?

    private struct State {
        var daemon: DaemonHandle?
        var retainedSelf: Unmanaged<HTTPTransport>?
        var streams: [UInt64: Subscriber] = [:]
        var closing = false
        /// Shuts down connections whose request is past its deadline (slowloris); its cancel
        /// handler frees the tracker, so it is cancelled only after `MHD_stop_daemon`.
        var reaper: DispatchSourceTimer?
    }
    private let state = Mutex(State())

    /// Event frames and bytes handed to sockets by stream readers.
    let deliveredEvents = Atomic<Int>(0)
    let deliveredBytes = Atomic<Int>(0)

    /// The open streams' subscribers, for periodic work.
    func streams() -> [Subscriber] { state.withLock { Array($0.streams.values) } }

    /// The bound port once started.
    let boundPort = Atomic<UInt16>(0)

    init(options: TransportOptions, delegate: any TransportDelegate) {
        self.options = options
        self.delegate = delegate
    }

    /// Number of open streams.
    var streamCount: Int { state.withLock { $0.streams.count } }

    /// Binds and starts serving. Throws `.startFailed` with libmicrohttpd's reason.
    func start() throws(MicroSSEError) {
        raiseFileLimit(to: options.connectionLimit + 64)
        // libmicrohttpd's timeout counts idle time only; a request must also arrive in full
        // within the same number of seconds (msse_shim_tracker: slowloris, slow bodies).
        let tracker: TrackerHandle? =
            options.connectionTimeout > 0
            ? msse_shim_tracker_create(UInt32(clamping: options.connectionTimeout)).map { TrackerHandle(pointer: $0) }
            : nil
        let retained = Unmanaged.passRetained(self)
        var error = [CChar](repeating: 0, count: 256)
        let daemon: OpaquePointer? = withOptionalCString(options.host) { host in
            withOptionalCString(options.tlsCertificatePEM) { cert in
                withOptionalCString(options.tlsKeyPEM) { key in
                    var o = msse_shim_daemon_options()
                    o.flags =
                        MHD_USE_EPOLL_INTERNAL_THREAD.rawValue | MHD_ALLOW_SUSPEND_RESUME.rawValue
                        | MHD_USE_TURBO.rawValue
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
        state.withLock {
            $0.daemon = DaemonHandle(pointer: daemon)
            $0.retainedSelf = retained
            $0.reaper = tracker.map { tracker in
                let timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
                let interval = DispatchTimeInterval.milliseconds(options.connectionTimeout > 2 ? 1_000 : 250)
                timer.schedule(deadline: .now() + interval, repeating: interval)
                timer.setEventHandler { _ = msse_shim_reap_slow_requests(tracker.pointer) }
                timer.setCancelHandler { msse_shim_tracker_destroy(tracker.pointer) }
                timer.resume()
                return timer
            }
        }
    }

    /// Graceful stop in the order libmicrohttpd needs (MHD-NOTES trap 2): refuse new streams,
    /// stop accepting, end every stream (resuming suspended ones), wait for the final chunks,
    /// then stop the daemon. Idempotent; returns when MHD's threads have exited.
    func stop() {
        let (daemon, streams) = state.withLock { s -> (DaemonHandle?, [Subscriber]) in
            s.closing = true
            return (s.daemon, Array(s.streams.values))
        }
        guard let daemon else { return }
        let listenSocket = MHD_quiesce_daemon(daemon.pointer)
        for sub in streams { sub.finish() }
        let deadline = Clocks.monotonicMilliseconds() + UInt64(max(0, options.drainTimeoutMilliseconds))
        while streamCount > 0 && Clocks.monotonicMilliseconds() < deadline {
            usleep(2_000)
        }
        // Any stream still open is not suspended (finish() resumed it and its reader no longer
        // suspends), so stopping the daemon now is safe; it closes those connections.
        let (retained, reaper) = state.withLock { s -> (Unmanaged<HTTPTransport>?, DispatchSourceTimer?) in
            let r = (s.retainedSelf, s.reaper)
            s.daemon = nil
            s.retainedSelf = nil
            s.reaper = nil
            return r
        }
        MHD_stop_daemon(daemon.pointer)
        reaper?.cancel()  // after the daemon: its cancel handler frees the tracker
        if listenSocket >= 0 { close(listenSocket) }
        retained?.release()
    }

    // MARK: - Called from the C callbacks (libmicrohttpd's threads)

    fileprivate func log(_ message: String) {
        delegate?.log(message)
    }

    fileprivate func dispatch(_ request: Request, connection: OpaquePointer) -> MHD_Result {
        msse_shim_request_arrived(connection)
        guard let delegate else { return queue(.text("server is stopping", status: 503), on: connection) }
        switch delegate.handle(request) {
        case .response(let response):
            return queue(response, on: connection)
        case .stream(let headers, let subscriber, let onClose):
            return queueStream(headers: headers, subscriber: subscriber, onClose: onClose, on: connection)
        }
    }

    /// Answers a request the transport itself refuses (before any route sees it).
    fileprivate func dispatchError(_ response: Response, on connection: OpaquePointer) -> MHD_Result {
        msse_shim_request_arrived(connection)
        return queue(response, on: connection)
    }

    private func queueStream(
        headers: [(name: String, value: String)], subscriber: Subscriber, onClose: @escaping @Sendable () -> Void,
        on connection: OpaquePointer
    ) -> MHD_Result {
        let refusal = state.withLock { s -> Response? in
            if s.closing { return .text("server is stopping", status: 503) }
            if s.streams.count >= options.maxStreams {
                var r = Response.text("too many subscribers", status: 503)
                r.headers.append(("Retry-After", "5"))
                return r
            }
            s.streams[subscriber.id] = subscriber
            return nil
        }
        if let refusal {
            onClose()
            return queue(refusal, on: connection)
        }
        let context = StreamContext(
            subscriber: subscriber, connection: ConnectionHandle(pointer: connection), transport: self,
            onClose: onClose)
        let cls = Unmanaged.passRetained(context).toOpaque()
        let handle = ConnectionHandle(pointer: connection)
        subscriber.setWaker { MHD_resume_connection(handle.pointer) }
        // libmicrohttpd owns the socket and closes it only after the response's free callback has
        // run (MHD_connection_close_ destroys the response first), and that callback detaches the
        // subscriber, clearing this closer under its lock: the fd is never used after it is closed.
        let fd = msse_shim_connection_fd(connection)
        if fd >= 0 {
            subscriber.setCloser { _ = shutdown(fd, Int32(SHUT_RDWR)) }
        }
        guard
            let response = MHD_create_response_from_callback(
                UInt64.max, max(64, options.blockSize), streamReader, cls, streamFreed)
        else {
            // MHD did not take ownership of cls: release it here instead of in streamFreed.
            streamFreed(cls)
            return .NO
        }
        for (name, value) in headers { MHD_add_response_header(response, name, value) }
        let result = MHD_queue_response(connection, UInt32(MHD_HTTP_OK), response)
        MHD_destroy_response(response)
        return result
    }

    fileprivate func streamClosed(_ subscriber: Subscriber) {
        _ = state.withLock { $0.streams.removeValue(forKey: subscriber.id) }
    }

    private func queue(_ response: Response, on connection: OpaquePointer) -> MHD_Result {
        let r = response.body.withUnsafeBytes { raw in
            MHD_create_response_from_buffer(
                raw.count, UnsafeMutableRawPointer(mutating: raw.baseAddress), .RESPMEM_MUST_COPY)
        }
        guard let r else { return .NO }
        for (name, value) in response.headers { MHD_add_response_header(r, name, value) }
        let result = MHD_queue_response(connection, UInt32(clamping: response.status), r)
        MHD_destroy_response(r)
        return result
    }

    private func raiseFileLimit(to wanted: Int) {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return }
        let target = min(rlim_t(wanted), limit.rlim_max)
        if limit.rlim_cur < target {
            limit.rlim_cur = target
            _ = setrlimit(RLIMIT_NOFILE_VALUE, &limit)
        }
    }
}

#if canImport(Glibc)
    private let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
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

/// A connection pointer carried to publisher threads. Sendable because the only cross-thread
/// call made with it is `MHD_resume_connection`, which libmicrohttpd documents as callable from
/// any thread, and it is made only while the connection is suspended (so it cannot be freed).
private struct ConnectionHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// Per-stream state handed to libmicrohttpd as the content reader's `cls`.
private final class StreamContext: Sendable {
    let subscriber: Subscriber
    let connection: ConnectionHandle
    let transport: HTTPTransport
    let onClose: @Sendable () -> Void

    init(
        subscriber: Subscriber, connection: ConnectionHandle, transport: HTTPTransport,
        onClose: @escaping @Sendable () -> Void
    ) {
        self.subscriber = subscriber
        self.connection = connection
        self.transport = transport
        self.onClose = onClose
    }
}

/// Per-request state in `con_cls`: the body as it arrives. Only touched on the connection's
/// own MHD thread, one call at a time, hence `@unchecked Sendable`.
private final class RequestContext: @unchecked Sendable {
    var body: [UInt8] = []
    var rejected = false
    /// A body that outgrew the limit while arriving (chunked, or longer than announced): MHD
    /// 0.9.75 refuses a response queued mid-upload, so the rest is discarded and the 413 is
    /// queued when the upload ends. Counts the bytes discarded so far.
    var discarded: Int?
}

private func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}

// MARK: - C callbacks

private let mhdLog: msse_shim_log_cb = { cls, message in
    guard let cls, let message else { return }
    Unmanaged<HTTPTransport>.fromOpaque(cls).takeUnretainedValue().log(String(cString: message))
}

private let accessHandler: MHD_AccessHandlerCallback = {
    cls, connection, url, method, version, uploadData, uploadDataSize, conCls in
    guard let cls, let connection, let conCls, let uploadDataSize else { return .NO }
    let transport = Unmanaged<HTTPTransport>.fromOpaque(cls).takeUnretainedValue()
    guard let raw = conCls.pointee else {
        // First call: headers are in. Refuse an announced oversize body before reading it.
        let context = RequestContext()
        conCls.pointee = Unmanaged.passRetained(context).toOpaque()
        if let length = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length"),
            let n = Int(String(cString: length)), n > transport.options.maxBodyBytes
        {
            context.rejected = true
            return queueTooLarge(transport, connection)
        }
        return .YES
    }
    let context = Unmanaged<RequestContext>.fromOpaque(raw).takeUnretainedValue()
    if uploadDataSize.pointee > 0 {
        let n = uploadDataSize.pointee
        uploadDataSize.pointee = 0
        if let discarded = context.discarded {
            // Discard up to another limit's worth, then give up on answering and close.
            context.discarded = discarded + n
            return discarded + n > transport.options.maxBodyBytes ? .NO : .YES
        }
        if context.rejected { return .YES }
        if context.body.count + n > transport.options.maxBodyBytes {
            context.rejected = true
            context.body = []
            context.discarded = n
            return .YES
        }
        if let uploadData {
            uploadData.withMemoryRebound(to: UInt8.self, capacity: n) {
                context.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: n))
            }
        }
        return .YES
    }
    if context.discarded != nil {
        context.discarded = nil
        return queueTooLarge(transport, connection)
    }
    if context.rejected { return .YES }
    guard let query = connectionValues(connection, .GET_ARGUMENT_KIND, strictUTF8: true) else {
        return transport.dispatchError(
            .text("query parameters must be valid UTF-8 once percent-decoded", status: 400), on: connection)
    }
    let request = Request(
        method: method.map { String(cString: $0) } ?? "",
        path: url.map { String(cString: $0) } ?? "/",
        httpVersion: version.map { String(cString: $0) } ?? "",
        headers: connectionValues(connection, .HEADER_KIND) ?? [],
        query: query,
        body: context.body,
        remoteAddress: clientAddress(connection))
    context.body = []
    return transport.dispatch(request, connection: connection)
}

private func queueTooLarge(_ transport: HTTPTransport, _ connection: OpaquePointer) -> MHD_Result {
    msse_shim_request_arrived(connection)
    let message = "request body is larger than \(transport.options.maxBodyBytes) bytes\n"
    return message.utf8CString.withUnsafeBytes { raw in
        guard
            let r = MHD_create_response_from_buffer(
                raw.count - 1, UnsafeMutableRawPointer(mutating: raw.baseAddress), .RESPMEM_MUST_COPY)
        else { return .NO }
        MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8")
        MHD_add_response_header(r, "Connection", "close")
        let result = MHD_queue_response(connection, UInt32(MHD_HTTP_CONTENT_TOO_LARGE), r)
        MHD_destroy_response(r)
        return result
    }
}

private let requestCompleted: MHD_RequestCompletedCallback = { _, connection, conCls, _ in
    if let connection { msse_shim_request_finished(connection) }
    guard let conCls, let raw = conCls.pointee else { return }
    conCls.pointee = nil
    Unmanaged<RequestContext>.fromOpaque(raw).release()
}

private let streamReader: MHD_ContentReaderCallback = { cls, _, buffer, max in
    guard let cls, let buffer else { return -2 }
    // MHD holds the context's reference until the free callback: borrow it, no retain per call.
    return Unmanaged<StreamContext>.fromOpaque(cls)._withUnsafeGuaranteedRef { context in
        readStream(context, into: UnsafeMutableRawBufferPointer(start: buffer, count: max))
    }
}

private func readStream(_ context: StreamContext, into out: UnsafeMutableRawBufferPointer) -> Int {
    // The queued frames are copied straight into libmicrohttpd's buffer, several per call.
    let action = context.subscriber.read(
        into: out,
        // Suspend while the subscriber's lock is held, so a publisher's resume can only come
        // after the suspend (MHD-NOTES: no lost wake-up, no resume of a running connection).
        onSuspend: { MHD_suspend_connection(context.connection.pointer) })
    switch action {
    case .wrote(let bytes, let events):
        context.transport.deliveredBytes.add(bytes, ordering: .relaxed)
        if events > 0 { context.transport.deliveredEvents.add(events, ordering: .relaxed) }
        return bytes
    case .suspend: return 0
    case .end: return -1  // MHD_CONTENT_READER_END_OF_STREAM: final zero-length chunk
    case .abort: return -2  // MHD_CONTENT_READER_END_WITH_ERROR: close now
    }
}

private let streamFreed: MHD_ContentReaderFreeCallback = { cls in
    guard let cls else { return }
    let context = Unmanaged<StreamContext>.takeRetainedValue(Unmanaged<StreamContext>.fromOpaque(cls))()
    context.subscriber.detach()
    context.transport.streamClosed(context.subscriber)
    context.onClose()
}

/// Headers or query parameters with their byte lengths, so a value with an encoded NUL (`%00`)
/// reaches validation whole instead of cut at the NUL. Returns nil when `strictUTF8` and a name or
/// value is not valid UTF-8 (never repaired silently: the request is refused).
private func connectionValues(
    _ connection: OpaquePointer, _ kind: MHD_ValueKind, strictUTF8: Bool = false
) -> [(name: String, value: String)]? {
    struct Collected {
        var values: [(name: String, value: String)] = []
        var strict: Bool
        var invalid = false
    }
    var collected = Collected(strict: strictUTF8)
    withUnsafeMutablePointer(to: &collected) { pointer in
        _ = MHD_get_connection_values_n(
            connection, kind,
            { cls, _, key, keySize, value, valueSize in
                guard let cls, let key else { return .YES }
                let c = cls.assumingMemoryBound(to: Collected.self)
                let keyBytes = UnsafeRawBufferPointer(start: key, count: keySize)
                let valueBytes = UnsafeRawBufferPointer(start: value, count: value == nil ? 0 : valueSize)
                if c.pointee.strict {
                    guard let k = String(validating: keyBytes, as: UTF8.self),
                        let v = String(validating: valueBytes, as: UTF8.self)
                    else {
                        c.pointee.invalid = true
                        return .NO
                    }
                    c.pointee.values.append((k, v))
                } else {
                    c.pointee.values.append(
                        (String(decoding: keyBytes, as: UTF8.self), String(decoding: valueBytes, as: UTF8.self)))
                }
                return .YES
            }, pointer)
    }
    return collected.invalid ? nil : collected.values
}

private func clientAddress(_ connection: OpaquePointer) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    guard msse_shim_client_address(connection, &buffer, buffer.count) == 0 else { return "" }
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}
