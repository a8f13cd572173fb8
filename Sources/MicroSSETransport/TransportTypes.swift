import MicroSSECore
import Synchronization

/// What the layer above answers to a request.
package enum TransportReply: Sendable {
    /// A complete response.
    case response(Response)
    /// A `text/event-stream` response fed from `subscriber`'s queue. `onClose` runs exactly once,
    /// when the stream's connection is gone (or at once, if the transport refuses the stream).
    case stream(headers: [(name: String, value: String)], subscriber: Subscriber, onClose: @Sendable () -> Void)
    /// An answer that comes later, from any thread, through ``DeferredReply/complete(with:)``:
    /// the connection is suspended meanwhile (a reply completed with `503` if the server stops).
    case deferred(DeferredReply)
}

/// The layer above the transport: turns requests into replies. Called on libmicrohttpd's threads;
/// must not block (work that waits on I/O answers ``TransportReply/deferred(_:)``).
package protocol TransportDelegate: AnyObject, Sendable {
    /// Asked once per request when its head is in and before any body byte is stored: `head`
    /// has an empty body. A response refuses the request at once (libmicrohttpd sends it
    /// instead of `100 Continue`, and the body is never read); nil lets it go on to
    /// ``handle(_:)``.
    func admit(_ head: Request) -> Response?
    func handle(_ request: Request) -> TransportReply
    func log(_ message: String)
}

extension TransportDelegate {
    package func admit(_ head: Request) -> Response? { nil }
}

/// The bytes of request bodies held by all of a transport's uploads together, against a
/// budget: an upload that would take it over is refused with `503`.
package final class UploadBudget: Sendable {
    /// The most bytes held at once.
    package let limit: Int
    private let held = Atomic<Int>(0)

    package init(limit: Int) {
        self.limit = limit
    }

    /// Bytes held now.
    package var inFlight: Int { held.load(ordering: .relaxed) }

    /// Takes `bytes` from the budget; false (and nothing taken) when they do not fit.
    package func reserve(_ bytes: Int) -> Bool {
        guard bytes > 0 else { return true }
        var current = held.load(ordering: .relaxed)
        while true {
            guard current + bytes <= limit else { return false }
            let (exchanged, original) = held.compareExchange(
                expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Gives back bytes taken with ``reserve(_:)``.
    package func release(_ bytes: Int) {
        if bytes > 0 { held.subtract(bytes, ordering: .relaxed) }
    }
}

/// Options of the libmicrohttpd daemon: mechanism only, no policy (the layer above decides who
/// may stream, how many, and what a request may carry).
package struct TransportOptions: Sendable {
    package var host: String
    package var port: UInt16
    package var connectionLimit: Int
    package var connectionMemoryLimit: Int
    package var connectionTimeout: Int
    package var threadPoolSize: Int
    package var perIPConnectionLimit: Int
    package var maxBodyBytes: Int
    package var tlsCertificatePEM: String?
    package var tlsKeyPEM: String?
    /// How long ``HTTPTransport/stop()`` waits for streams to flush their final chunk.
    package var drainTimeoutMilliseconds: Int
    /// Whether ``HTTPTransport/start()`` raises the process's open-file limit to fit
    /// `connectionLimit` (a process-wide change: the CLI opts in, embedders decide).
    package var raiseFileLimit: Bool
    /// The bytes of request bodies all uploads in flight may hold together (never below
    /// `maxBodyBytes`, so one upload of the largest size always fits); shared by every copy of
    /// these options, so give each transport options of its own.
    package let uploadBudget: UploadBudget

    package init(
        host: String, port: UInt16, connectionLimit: Int, connectionMemoryLimit: Int, connectionTimeout: Int,
        threadPoolSize: Int, perIPConnectionLimit: Int, maxBodyBytes: Int, tlsCertificatePEM: String?,
        tlsKeyPEM: String?, drainTimeoutMilliseconds: Int, raiseFileLimit: Bool,
        maxUploadBytesInFlight: Int = 64 << 20
    ) {
        self.host = host
        self.port = port
        self.connectionLimit = connectionLimit
        self.connectionMemoryLimit = connectionMemoryLimit
        self.connectionTimeout = connectionTimeout
        self.threadPoolSize = threadPoolSize
        self.perIPConnectionLimit = perIPConnectionLimit
        self.maxBodyBytes = maxBodyBytes
        self.tlsCertificatePEM = tlsCertificatePEM
        self.tlsKeyPEM = tlsKeyPEM
        self.drainTimeoutMilliseconds = drainTimeoutMilliseconds
        self.raiseFileLimit = raiseFileLimit
        self.uploadBudget = UploadBudget(limit: max(maxUploadBytesInFlight, maxBodyBytes))
    }

    /// The buffer libmicrohttpd allocates with every stream's response. It is the content
    /// reader's whole buffer only for an HTTP/1.0 (close-delimited) stream: 1 KiB, so an event
    /// rarely takes more than one call. An HTTP/1.1 (chunked) reader fills the connection's pool
    /// instead and this buffer is never used, so it is one byte (libmicrohttpd refuses zero):
    /// every held stream would pay for more (docs/DESIGN.md, pool sizing).
    package static func streamBlockSize(http11: Bool) -> Int { http11 ? 1 : 1_024 }
}

/// The two threads a transport runs for its streams, while started: the peer watcher (closed
/// peers, the idle-buffer release pass) and the suspended streams' writer. One reference in
/// each stream's context instead of two.
final class StreamThreads: Sendable {
    let watcher: PeerWatcher?
    let writer: SuspendedWriter?

    init(watcher: PeerWatcher?, writer: SuspendedWriter?) {
        self.watcher = watcher
        self.writer = writer
    }
}
