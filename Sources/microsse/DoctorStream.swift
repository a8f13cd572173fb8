import MicroSSE

/// One event-stream connection read as bytes arrive. Every event and comment is stamped with the
/// monotonic time of the read that completed it, so delays and bursts are measured as the
/// client saw them.
final class ProbeStream {
    /// How the stream ended, and when.
    enum End {
        /// The body ended as its framing says (the final chunk, or its Content-Length).
        case clean(at: Double)
        /// The connection closed (or reset) in the middle of the body.
        case cut(at: Double)
        /// The bytes broke HTTP framing.
        case broken(String, at: Double)

        var at: Double {
            switch self {
            case .clean(let at), .cut(let at), .broken(_, let at): at
            }
        }
    }

    let head: ResponseHead
    /// When the response head was complete.
    let openedAt: Double
    /// When the first body byte arrived.
    private(set) var firstByteAt: Double?
    /// When the last body bytes arrived (or the head, before any): an idle stream's last sign of life.
    private(set) var lastBodyAt: Double
    private(set) var events: [(event: ParsedEvent, at: Double)] = []
    /// The arrival time of every comment line (heartbeats).
    private(set) var commentTimes: [Double] = []
    private(set) var end: End?
    /// Whether the body is compressed, so it is not parsed as an event stream.
    let compressed: Bool

    private let connection: HTTPConnection
    /// The TLS session of an `https://` stream.
    var tls: TLSSession? { connection.tls }
    private var decoder: BodyDecoder
    private var parser = EventStreamParser()

    /// Opens `GET url` as a browser's EventSource does (compression offered, as browsers do).
    /// Throws ``NoResponseHead`` when the head takes longer than `headWait` seconds.
    init(_ url: DoctorURL, lastEventID: String? = nil, timeout: Double, headWait: Double) throws {
        connection = try HTTPConnection(url, timeout: timeout)
        var request = "GET \(url.target) HTTP/1.1\r\nHost: \(url.hostHeader)\r\n"
        request += "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
        request += "Accept-Encoding: gzip, deflate, br\r\nUser-Agent: microsse-doctor\r\n"
        if let lastEventID { request += "Last-Event-ID: \(lastEventID)\r\n" }
        request += "\r\n"
        try connection.send(request)
        head = try connection.readHead(deadline: monotonicSeconds() + headWait)
        openedAt = monotonicSeconds()
        lastBodyAt = openedAt
        decoder = BodyDecoder(head)
        let encoding = head.header("Content-Encoding")?.lowercased() ?? "identity"
        compressed = !(encoding.isEmpty || encoding == "identity")
    }

    /// Reads until `deadline`, the stream's end, or `done()` holds (checked after every read).
    func read(until deadline: Double, done: () -> Bool = { false }) {
        while end == nil, !done(), monotonicSeconds() < deadline {
            let bytes: [UInt8]?
            do {
                // Short polls, so `done()` is looked at even while nothing arrives.
                bytes = try connection.receive(deadline: min(deadline, monotonicSeconds() + 0.05))
            } catch {
                end = .cut(at: monotonicSeconds())
                return
            }
            guard let bytes else { continue }
            let at = monotonicSeconds()
            guard !bytes.isEmpty else {
                end = decoder.complete ? .clean(at: at) : .cut(at: at)
                return
            }
            do {
                deliver(try decoder.decode(bytes), at: at)
            } catch {
                end = .broken(String(describing: error), at: at)
            }
            if end == nil, decoder.complete { end = .clean(at: at) }
        }
    }

    private func deliver(_ body: [UInt8], at: Double) {
        guard !body.isEmpty else { return }
        if firstByteAt == nil { firstByteAt = at }
        lastBodyAt = at
        guard !compressed else { return }
        let before = parser.comments.count
        for event in parser.feed(body) { events.append((event, at)) }
        commentTimes += Array(repeating: at, count: parser.comments.count - before)
    }

    func close() { connection.close() }
}
