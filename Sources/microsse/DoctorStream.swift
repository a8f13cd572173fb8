import MicroSSE

/// One event-stream connection read as bytes arrive. Every event and comment is stamped with the
/// monotonic time of the read that completed it, so delays and bursts are measured as the
/// client saw them.
///
/// The server is not trusted: the stream is ended as ``End/broken(_:at:)`` (a failed check)
/// past ``maxBlockBytes`` in one line or event, ``maxItems`` events and comments, or
/// ``maxBytes`` received, so a stream that never ends a line, floods events or announces a
/// chunk of gigabytes costs bounded memory. Only the events the doctor looks at are kept.
final class ProbeStream {
    /// The most bytes one line or one event (from blank line to blank line) may hold: twice the
    /// hub's largest publish by default.
    static let maxBlockBytes = 4 << 20
    /// The most events and comments (heartbeats) one stream may carry.
    static let maxItems = 100_000
    /// The most bytes one stream may send.
    static let maxBytes = 64 << 20
    /// The event types kept in ``events``: the probes and the gap signal; others are only counted.
    static let keptTypes: Set<String> = [Prober.eventType, "microsse.gap"]

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
    /// The probe events and gap signals received (see ``keptTypes``).
    private(set) var events: [(event: ParsedEvent, at: Double)] = []
    /// Events and comments received, kept or not.
    private(set) var items = 0
    /// Bytes received after the head.
    private(set) var received = 0
    /// Bytes of the current event so far (since the last blank line), and of its current line.
    private var blockBytes = 0
    private var lineBytes = 0
    /// Whether the last body byte was a CR (so an LF after it ends no further line).
    private var afterCR = false
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
    /// Connecting, sending and the response head take at most `wait` seconds together; throws
    /// ``NoResponseHead`` when the head is not in by then.
    init(_ url: DoctorURL, lastEventID: String? = nil, wait: Double) throws {
        let deadline = monotonicSeconds() + wait
        connection = try HTTPConnection(url, timeout: wait)
        var request = "GET \(url.target) HTTP/1.1\r\nHost: \(url.hostHeader)\r\n"
        request += "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
        request += "Accept-Encoding: gzip, deflate, br\r\nUser-Agent: microsse-doctor\r\n"
        if let lastEventID { request += "Last-Event-ID: \(lastEventID)\r\n" }
        request += "\r\n"
        try connection.send(request)
        head = try connection.readHead(deadline: deadline)
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
            received += bytes.count
            do {
                deliver(try decoder.decode(bytes), at: at)
            } catch {
                end = .broken(String(describing: error), at: at)
            }
            if end == nil, received > Self.maxBytes {
                end = .broken(
                    "the stream sent more than \(Self.maxBytes >> 20) MiB: the doctor stops reading "
                        + "(check a channel of its own, such as doctor-probe)", at: at)
            }
            if end == nil, decoder.complete { end = .clean(at: at) }
        }
    }

    private func deliver(_ body: [UInt8], at: Double) {
        guard !body.isEmpty else { return }
        if firstByteAt == nil { firstByteAt = at }
        lastBodyAt = at
        guard !compressed else { return }
        if let reason = measure(body) {
            end = .broken(reason, at: at)
            return
        }
        let before = parser.comments.count
        for event in parser.feed(body) {
            items += 1
            if Self.keptTypes.contains(event.type) { events.append((event, at)) }
        }
        let comments = parser.comments.count - before
        items += comments
        commentTimes += Array(repeating: at, count: comments)
        if items > Self.maxItems {
            end = .broken(
                "the stream sent more than \(Self.maxItems) events and comments: the doctor stops reading "
                    + "(check a channel of its own, such as doctor-probe)", at: at)
        }
    }

    /// Counts the bytes of the current line and event before the parser stores them; the reason
    /// to stop when one grows past ``maxBlockBytes``.
    private func measure(_ body: [UInt8]) -> String? {
        for byte in body {
            if byte == 10 || byte == 13 {
                if byte == 10 && afterCR {
                    afterCR = false
                    continue
                }
                afterCR = byte == 13
                if lineBytes == 0 { blockBytes = 0 }  // a blank line ends the event
                lineBytes = 0
            } else {
                afterCR = false
                lineBytes += 1
                blockBytes += 1
                if blockBytes > Self.maxBlockBytes {
                    let what = lineBytes > Self.maxBlockBytes ? "a line" : "an event"
                    return "\(what) longer than \(Self.maxBlockBytes >> 20) MiB: the doctor stops reading"
                }
            }
        }
        return nil
    }

    func close() { connection.close() }
}
