import MicroSSE

#if canImport(Glibc)
    import Glibc
#endif

/// A check's outcome. Only `FAIL` makes the doctor exit non-zero.
enum Verdict: String {
    case ok = "ok"
    case warn = "warn"
    case fail = "FAIL"
    case skip = "skip"
}

/// The lines the doctor prints, one per check, as each check completes. A detail quotes what the
/// server sent (a reason phrase, a header, a body): it is printed escaped, so no server can end
/// a line early, move the cursor or colour the terminal, and every line is the doctor's own.
final class Report {
    private(set) var lines: [(verdict: Verdict, text: String)] = []

    func add(_ verdict: Verdict, _ check: String, _ detail: String) {
        let text = verdict.rawValue.padding(4) + "  " + check + ": " + escaped(detail)
        lines.append((verdict, text))
        print(text)
        fflush(nil)
    }

    var failures: [String] { lines.filter { $0.verdict == .fail }.map(\.text) }
}

/// `text` with every control character (C0, DEL, C1) and every bidirectional-text control
/// written as `\u{…}` (and `\` as `\\`), so it prints as one inert line.
func escaped(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        let v = scalar.value
        if v < 0x20 || (0x7F...0x9F).contains(v) || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
            || v == 0x2028 || v == 0x2029
        {
            out += "\\u{" + String(v, radix: 16, uppercase: true) + "}"
        } else if scalar == "\\" {
            out += "\\\\"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

/// Milliseconds, rounded, for the report.
func milliseconds(_ seconds: Double) -> String { "\(Int((seconds * 1000).rounded())) ms" }

/// Seconds with one decimal, for the report.
func seconds(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10) s"
}

extension Report {
    /// The response head of an event stream, header by header. Returns false when nothing more
    /// can be learned from the stream (not a 200 event stream).
    func checkHeaders(_ head: ResponseHead, tls: TLSSession? = nil) -> Bool {
        let usable = head.status == 200
        add(
            usable ? .ok : .fail, "status",
            usable
                ? "\(head.status) \(head.reason)"
                : "\(head.status) \(head.reason): an EventSource needs 200 (is the URL a stream?)")
        let path = tls.map { " over \($0.version), ALPN \($0.alpn ?? "none")" } ?? ""
        add(
            head.version == "HTTP/1.1" ? .ok : .warn, "http version",
            head.version == "HTTP/1.1"
                ? "HTTP/1.1 between you and the first hop\(path)"
                    + (tls == nil ? "" : " (browsers would use h2 through an HTTP/2 proxy: see http/2)")
                : "\(head.version)\(path): expected HTTP/1.1 (the body can only end by closing the connection)")
        let type = head.header("Content-Type") ?? ""
        let isStream = type.lowercased().hasPrefix("text/event-stream")
        add(
            isStream ? .ok : .fail, "content-type",
            isStream ? type : "'\(type)': an EventSource accepts only text/event-stream")
        let cache = head.header("Cache-Control") ?? ""
        let uncached = cache.lowercased().contains("no-cache") || cache.lowercased().contains("no-store")
        add(
            uncached ? .ok : .warn, "cache-control",
            uncached
                ? cache
                : (cache.isEmpty ? "absent" : "'\(cache)'")
                    + ": without no-cache a cache or CDN may hold or replay the stream")
        switch head.header("X-Accel-Buffering")?.lowercased() {
        case "no": add(.ok, "x-accel-buffering", "no (nginx in front will not buffer)")
        case nil:
            add(.ok, "x-accel-buffering", "absent (a proxy that honours it removes it; the buffering check tells)")
        case let value?: add(.warn, "x-accel-buffering", "'\(value)': an nginx in front buffers this stream")
        }
        let encoding = head.header("Content-Encoding") ?? ""
        if encoding.isEmpty || encoding.lowercased() == "identity" {
            add(.ok, "content-encoding", "none")
        } else {
            add(
                .fail, "content-encoding",
                "\(encoding): compression buffers events until the compressor flushes; "
                    + "turn it off for text/event-stream (nginx: gzip off)")
        }
        let transfer = head.header("Transfer-Encoding") ?? ""
        if transfer.lowercased().contains("chunked") {
            add(.ok, "transfer-encoding", transfer)
        } else if let length = head.header("Content-Length") {
            add(
                .fail, "transfer-encoding",
                "none, Content-Length \(length): the stream was buffered into one finished body")
        } else {
            add(.ok, "transfer-encoding", "none (the body ends when the connection closes)")
        }
        return usable && isStream
    }
}

/// One probe event the doctor published, and what became of it.
struct Probe: Sendable {
    var seq: Int
    var sentAt: Double
    var arrivedAt: Double?
    var id: String?
}

extension Report {
    /// The delays and spacing of the probe events: late or bunched arrivals mean a buffer.
    func checkBuffering(_ probes: [Probe], spacing: Double, waited: Double, stream: ProbeStream) {
        guard !probes.isEmpty else {
            add(.skip, "buffering", "no probe event was published (see publish)")
            return
        }
        let arrived = probes.filter { $0.arrivedAt != nil }
        let delays = arrived.map { $0.arrivedAt! - $0.sentAt }.sorted()
        let held = "events held by something between you and the hub"
        guard arrived.count == probes.count else {
            let ended = stream.end.map { "; the stream ended \(seconds($0.at - stream.openedAt)) after its head" } ?? ""
            add(
                .fail, "buffering",
                "\(held): \(arrived.count) of \(probes.count) probe events arrived within \(seconds(waited)) "
                    + "(a proxy or CDN buffer, compression; or the two URLs name different channels)\(ended)")
            return
        }
        let p50 = Int((delays[delays.count / 2] * 1000).rounded())
        let summary = "p50/max delay \(p50)/\(milliseconds(delays.last!))"
        // Events published `spacing` apart that arrive within a quarter of that were held together.
        var bunched = 0
        for (a, b) in zip(arrived, arrived.dropFirst())
        where b.sentAt - a.sentAt >= spacing * 0.75 && b.arrivedAt! - a.arrivedAt! < spacing / 4 {
            bunched += 1
        }
        if bunched > 0 {
            add(
                .fail, "buffering",
                "\(held): \(probes.count) probe events sent \(milliseconds(spacing)) apart arrived in bursts "
                    + "(\(bunched) together with the one before; \(summary))")
        } else if delays.last! > 1 {
            add(.warn, "buffering", "slow path: \(summary) for \(probes.count) probe events, none in bursts")
        } else {
            add(.ok, "buffering", "\(summary) for \(probes.count) probe events sent \(milliseconds(spacing)) apart")
        }
    }

    /// Whether the stream stayed open for the whole idle window that began at `start`.
    func checkIdle(_ stream: ProbeStream, window: Double, start: Double) {
        let heartbeats = stream.commentTimes.filter { $0 >= start }.count
        guard let end = stream.end else {
            add(
                .ok, "idle",
                "open after \(seconds(window)) without events"
                    + (heartbeats == 0 ? " or heartbeats" : " (\(heartbeats) heartbeat(s) came through)"))
            return
        }
        guard end.at >= start else {
            add(.skip, "idle", "the stream had already ended before the idle test began")
            return
        }
        if case .broken = end {
            add(.skip, "idle", "the stream broke the rules (see stream)")
            return
        }
        let quiet = end.at - stream.lastBodyAt
        add(
            .fail, "idle",
            "cut after \(seconds(quiet)): something between you and the hub closes idle connections; "
                + "set --heartbeat below that")
    }

    /// A stream the doctor stopped reading because it broke HTTP framing or a bound: a failure.
    func checkStream(_ stream: ProbeStream, _ check: String = "stream") {
        if case .broken(let reason, _) = stream.end { add(.fail, check, reason) }
    }

    /// Heartbeats seen on a stream watched without publishing, with the limits of what they show.
    func checkHeartbeats(_ stream: ProbeStream, watched: Double) {
        if let first = stream.firstByteAt {
            add(.ok, "first bytes", "\(milliseconds(first - stream.openedAt)) after the headers")
        } else {
            add(.warn, "first bytes", "none within \(seconds(watched)) of the headers")
        }
        if let first = stream.commentTimes.first {
            add(
                .ok, "heartbeat",
                "first comment \(seconds(first - stream.openedAt)) after the headers, "
                    + "\(stream.commentTimes.count) in \(seconds(watched))")
        } else if stream.end == nil {
            add(
                .warn, "heartbeat",
                "none within \(seconds(watched)): the hub's --heartbeat is longer, or something holds the stream "
                    + "(--publish tells which)")
        }
        add(
            .skip, "buffering",
            "needs --publish: heartbeats alone cannot show whether events are delayed or held in bursts")
    }
}
