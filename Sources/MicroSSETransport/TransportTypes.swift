import MicroSSECore

/// What the layer above answers to a request.
package enum TransportReply: Sendable {
    /// A complete response.
    case response(Response)
    /// A `text/event-stream` response fed from `subscriber`'s queue. `onClose` runs exactly once,
    /// when the stream's connection is gone (or at once, if the transport refuses the stream).
    case stream(headers: [(name: String, value: String)], subscriber: Subscriber, onClose: @Sendable () -> Void)
}

/// The layer above the transport: turns requests into replies. Called on libmicrohttpd's threads;
/// must not block.
package protocol TransportDelegate: AnyObject, Sendable {
    func handle(_ request: Request) -> TransportReply
    func log(_ message: String)
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

    package init(
        host: String, port: UInt16, connectionLimit: Int, connectionMemoryLimit: Int, connectionTimeout: Int,
        threadPoolSize: Int, perIPConnectionLimit: Int, maxBodyBytes: Int, tlsCertificatePEM: String?,
        tlsKeyPEM: String?, drainTimeoutMilliseconds: Int, raiseFileLimit: Bool
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
    }

    /// The buffer libmicrohttpd allocates with every stream's response. It bounds one
    /// content-reader call only for HTTP/1.0 (close-delimited) streams; HTTP/1.1 readers fill the
    /// connection's pool. Small, because every held stream pays for it (docs/DESIGN.md, pool sizing).
    package static let streamBlockSize = 256
}
