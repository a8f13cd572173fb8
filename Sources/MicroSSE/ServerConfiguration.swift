import MicroSSECore
import MicroSSETransport

#if canImport(Glibc)
    import Glibc
#endif

/// Everything a ``Server`` can be configured with. Every field has a default that suits a
/// server holding thousands of streams on one machine.
public struct ServerConfiguration: Sendable {
    /// TLS material for HTTPS, as PEM text.
    public struct TLS: Sendable {
        /// The certificate chain, PEM.
        public var certificatePEM: String
        /// The private key, PEM (unencrypted).
        public var privateKeyPEM: String

        /// Creates TLS settings from PEM text.
        public init(certificatePEM: String, privateKeyPEM: String) {
            self.certificatePEM = certificatePEM
            self.privateKeyPEM = privateKeyPEM
        }

        /// Reads TLS settings from PEM files (what `microsse serve --tls-cert --tls-key` does).
        ///
        /// - Throws: ``MicroSSEError`` with code ``MicroSSEError/Code/invalidArgument`` and a
        ///   one-line reason when a file cannot be read, is larger than 1 MiB, is not UTF-8 text or
        ///   has no PEM block.
        public init(certificateFile: String, privateKeyFile: String) throws(MicroSSEError) {
            self.certificatePEM = try readPEMFile(certificateFile, what: "TLS certificate", maxBytes: 1 << 20)
            self.privateKeyPEM = try readPEMFile(privateKeyFile, what: "TLS private key", maxBytes: 1 << 20)
        }
    }

    /// Numeric IPv4 or IPv6 address to bind. Default `127.0.0.1`.
    public var host = "127.0.0.1"
    /// Port to bind; 0 picks a free one (read it back from ``Server/port``). Default 8080.
    public var port: UInt16 = 8080
    /// Seconds between heartbeat comments on an idle stream; 0 turns heartbeats off. Default 15.
    /// Heartbeats keep proxies from closing idle streams and reveal dead peers.
    public var heartbeatSeconds = 15
    /// A `retry:` value (milliseconds) sent once at the start of every stream. Default none.
    public var retryMilliseconds: Int?
    /// Events kept per channel for `Last-Event-ID` resume. Default 1,000.
    public var historyCount = 1_000
    /// Encoded bytes kept per channel for resume. Default 8 MiB.
    public var historyBytes = 8 << 20
    /// Streams served at once; more get `503` with `Retry-After`. Default 10,000.
    public var maxClients = 10_000
    /// Bytes one subscriber may have pending; a subscriber over it is disconnected (it can resume
    /// from history). Default 8 MiB, which holds the largest event ``maxPublishBytes`` admits.
    public var clientBufferBytes = 8 << 20
    /// Largest request body accepted (publish payloads); larger gets `413`. Default 2 MiB.
    public var maxPublishBytes = 2 << 20
    /// Whether `POST /events/{channel}` publishes. Default off (`405`).
    public var publishing = false
    /// When set, publishing requires `Authorization: Bearer <token>`. Default none.
    public var publishToken: String?
    /// When set, `GET /stats` and `GET /metrics` require `Authorization: Bearer <token>`
    /// (compared in constant time); without it they get `401`. Default none: both answer anyone,
    /// as scrapers expect. They tell the numbers of streams, channels, publishes, deliveries,
    /// bytes, drops and disconnects, and `/metrics` also streams opened, gap signals, publish
    /// latency and the largest pending output of a stream: the hub's traffic and load, never a
    /// channel name, an id, an address, a token or a payload. `/healthz` and `/readyz` stay open.
    public var statsToken: String?
    /// Bytes of history all channels together may hold, their bookkeeping included, as the heap
    /// really holds them (malloc's chunks, containers by capacity; a one-byte event on a new
    /// channel costs about 600–800 bytes, docs/LIMITS.md has the formula). Over it, the oldest
    /// events of all channels are evicted first (a resume from one gets the `evicted` gap), and
    /// channels with no subscribers and nothing retained are forgotten; freed memory is given
    /// back to the system (`malloc_trim`). Default 256 MiB. Not used with Redis, which bounds
    /// its own streams.
    public var historyMemoryBytes = 256 << 20
    /// Host names (the `Host` header without its port, compared case-insensitively) this
    /// server answers for; a request naming another host gets `421`. Empty (the default)
    /// answers any. Set it on a server reachable from browsers to defeat DNS rebinding.
    public var allowedHosts: [String] = []
    /// Token authorization (JWT): when set, subscribing to a channel needs a token granting it
    /// (unless the channel matches ``publicChannels``), and a token granting a channel also lets
    /// its bearer publish there. Default nil: no tokens are looked at.
    public var jwt: JWTSettings?
    /// Channel patterns (`news`, `public.*`, `*`) anyone may subscribe to without a token when
    /// ``jwt`` is set. Needs ``jwt``. Default none.
    public var publicChannels: [String] = []
    /// Origins allowed to read streams cross-origin (`*` allows any). Default none.
    public var corsOrigins: [String] = []
    /// Whether the built-in channel routes (`/events/{channel}`, `/events?channel=`) are served.
    /// Default on.
    public var channelRoutes = true
    /// Whether `GET /healthz`, `GET /readyz`, `GET /stats` and `GET /metrics` are served. Default on.
    public var statusRoutes = true
    /// Seconds a stream may have bytes pending without the peer reading any before it is
    /// disconnected as dead. Default 30.
    public var writeTimeoutSeconds = 30
    /// Seconds an idle non-stream connection (or a stalled request) is kept. Default 30.
    public var connectionTimeoutSeconds = 30
    /// TCP connections libmicrohttpd accepts at once (streams plus ordinary requests).
    /// Default 10,240; the process's open-file limit is raised to fit when allowed.
    public var connectionLimit = 10_240
    /// Connections from one IP address at once; 0 = no limit. Default 0. The request of a
    /// connection over it is answered `429` (it must arrive within 2 s); past twice the limit,
    /// libmicrohttpd closes the address's new connections at accept.
    public var perIPConnectionLimit = 0
    /// libmicrohttpd's per-connection memory pool in bytes: it holds the request (line and
    /// headers) and then the response's write buffer. Default 32 KiB, libmicrohttpd's own.
    ///
    /// - **Request size.** A request must fit in about half the pool (libmicrohttpd keeps the
    ///   parsed headers and cannot grow its read buffer past them): at 32 KiB a subscribe
    ///   request may carry about 16 KB of request line and headers, cookies and tokens included
    ///   (measured: 2.3 KB at 5 KiB, 3.9 KB at 8 KiB, 8 KB at 16 KiB). Larger requests get `431`
    ///   (or `414` for a long path); just over the limit, a stream request can also be closed
    ///   without an answer (its response head no longer fits).
    /// - **Memory per stream.** A stream that is writing uses the pool's pages it touches (about
    ///   23 KB per stream measured at 32 KiB). Once a stream has been idle (suspended) for a
    ///   second or two, the transport gives the whole pages of its write buffer back to the
    ///   kernel, so an idle stream costs about 6.8 KB (10,000 idle streams, loopback; 6.5 KB at a
    ///   4 KiB pool, which has no whole page to give back). The pages come back, zeroed, when
    ///   the stream next writes past the first page of its buffer. A smaller pool therefore
    ///   saves little on idle streams; it bounds busy streams and costs request size.
    /// - **Write size.** One content-reader call fills at most what the pool has left, so an
    ///   event larger than that is written in several `send` calls. Publish bodies are not
    ///   limited by the pool: they are read in pieces up to ``maxPublishBytes``.
    public var connectionMemoryLimit = 32 << 10
    /// libmicrohttpd polling threads; 1 = one internal epoll thread. More threads spread the
    /// connections (and the per-turn walk over resumed streams) across cores. Default 1.
    public var threadPoolSize = 1
    /// HTTPS settings; nil serves plain HTTP. Default nil.
    public var tls: TLS?
    /// Milliseconds ``Server/stop()`` waits for streams to flush their final chunk. Default 3,000.
    public var shutdownDrainMilliseconds = 3_000
    /// When ``Server/stop()`` ends the streams, each first gets a `retry:` drawn at random from
    /// 0 to this many milliseconds, so browsers reconnect spread over the window instead of all in
    /// the same millisecond (to the restarted hub, or another one). 0 sends none. Default 5,000.
    public var drainWindowMilliseconds = 5_000
    /// Seconds an event stays replayable after it was published; older events are not replayed
    /// and a client resuming from one gets the gap signal. 0 = no age limit. Default 0.
    public var historyTTLSeconds = 0

    /// Whether ``Server/start()`` raises the process's open-file limit (`RLIMIT_NOFILE`) to fit
    /// ``connectionLimit``. A process-wide change, so off by default; `microsse serve` turns it on.
    public var raiseFileLimit = false

    /// Where events live when not in this process's memory (set by the Redis module's
    /// `redis` property). nil = the in-memory broker.
    package var brokerFactory: (any BrokerFactory)?

    /// Request-body bytes all uploads in flight may hold together (publish bodies being
    /// received); an upload that would take them over gets `503` with `Retry-After`: at once when
    /// its `Content-Length` announces it, otherwise when its body crosses the budget (the rest is
    /// then discarded unread into memory). Never less than ``maxPublishBytes`` in effect, so one
    /// upload of the largest size always fits. Default 64 MiB (32 uploads of the default 2 MiB).
    public var maxUploadBytesInFlight = 64 << 20

    /// Most distinct channels one stream may carry (`/events?channel=a&channel=b…`); a subscribe
    /// naming more gets `400` with a reason naming the limit. Default 32: 32 channels of the
    /// longest name (128 bytes) make a request target of about 4.4 KB, which libmicrohttpd keeps in
    /// the connection's memory (``connectionMemoryLimit``, 32 KiB) together with one parsed entry
    /// per parameter and the other headers, leaving room for the usual cookies; and each channel
    /// costs the stream a subscription in the broker. Must be at least 1.
    public var maxChannelsPerStream = 32

    /// The defaults.
    public init() {}
}

/// The text of the PEM file at `path` (TLS certificates and keys, JWT public keys): the one routine
/// that reads them, so every PEM file is refused the same way. Throws `.invalidArgument` naming
/// `what` and `path` when the file cannot be read, is larger than `maxBytes`, is not UTF-8 text
/// or holds no `-----BEGIN ` line.
func readPEMFile(_ path: String, what: String, maxBytes: Int) throws(MicroSSEError) -> String {
    guard let file = fopen(path, "rb") else {
        throw MicroSSEError(.invalidArgument, "cannot read \(what) \(path): \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    var bytes = [UInt8](repeating: 0, count: maxBytes + 1)
    let n = bytes.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
    guard ferror(file) == 0 else {
        throw MicroSSEError(.invalidArgument, "cannot read \(what) \(path): read error")
    }
    guard n <= maxBytes else {
        throw MicroSSEError(.invalidArgument, "\(what) \(path) is larger than \(maxBytes >> 10) KiB")
    }
    guard let text = String(validating: bytes[0..<n], as: UTF8.self), text.contains("-----BEGIN ") else {
        throw MicroSSEError(.invalidArgument, "\(what) \(path) is not a PEM file")
    }
    return text
}
