import Logging
import MicroSSECore
import MicroSSETransport
import Synchronization

/// One line per answered request and per ended stream, at `info` level on its own `Logger`:
///
///     access remote=127.0.0.1 method=GET path=/events/news?authorization=[redacted] status=200 bytes=- duration=12.402s stream=7
///
/// A stream's line is written when its connection is gone, so the log answers who was connected,
/// to what and for how long. Query values that carry credentials (``redactedKeys``) are replaced
/// by `[redacted]`. A stream's bytes are `-`: the transport counts bytes per server, not per
/// stream.
final class AccessLog: Sendable {
    let logger: Logger
    private let openedAt = Mutex<[UInt64: ContinuousClock.Instant]>([:])

    /// Query keys whose values are never logged (compared ignoring case).
    static let redactedKeys: Set<String> = ["authorization", "access_token", "token"]

    init(logger: Logger) {
        self.logger = logger
    }

    /// Notes when a stream opened (its line is written by ``streamClosed(_:)``).
    func streamOpened(_ client: Client) {
        let now = ContinuousClock.now
        openedAt.withLock { $0[client.id] = now }
    }

    /// Writes the line of a stream whose connection is gone.
    func streamClosed(_ client: Client) {
        let opened = openedAt.withLock { $0.removeValue(forKey: client.id) }
        write(client.request, status: 200, bytes: nil, since: opened, stream: client.id)
    }

    /// Writes the line of a request answered with `reply` (a stream's line comes when it ends).
    func answered(_ request: Request, _ reply: TransportReply, since started: ContinuousClock.Instant?) {
        guard case .response(let response) = reply else { return }
        write(request, status: response.status, bytes: response.body.count, since: started, stream: nil)
    }

    private func write(
        _ request: Request, status: Int, bytes: Int?, since started: ContinuousClock.Instant?, stream: UInt64?
    ) {
        var line = "access remote=\(request.remoteAddress) method=\(request.method) path=\(Self.loggedPath(request))"
        line += " status=\(status) bytes=\(bytes.map(String.init) ?? "-")"
        line += " duration=\(started.map { Self.seconds($0.duration(to: .now)) } ?? "-")"
        if let stream { line += " stream=\(stream)" }
        logger.info("\(line)")
    }

    /// The path and query, with credential values replaced and spaces and quotes escaped so the
    /// line stays one token per field.
    static func loggedPath(_ request: Request) -> String {
        var out = escaped(request.path)
        for (index, pair) in request.query.enumerated() {
            out += index == 0 ? "?" : "&"
            out += escaped(pair.name) + "="
            out += redactedKeys.contains(pair.name.lowercased()) ? "[redacted]" : escaped(pair.value)
        }
        return out
    }

    private static func escaped(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case " ", "\"", "\\", "%", "&", "=", "?": out += "%" + hex(scalar.value)
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += "%" + hex(scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return digits.count == 1 ? "0" + digits : digits
    }

    /// `d` in seconds with millisecond precision, e.g. `12.402s`.
    static func seconds(_ d: Duration) -> String {
        let millis = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        let fraction = String(millis % 1000)
        return "\(millis / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)s"
    }
}

extension Hub {
    /// Writes the access log line of a request the router has answered (streams are logged
    /// when they end). The router calls this once per request with the reply it returns and the
    /// instant it started handling the request.
    func answered(_ request: Request, _ reply: TransportReply, since started: ContinuousClock.Instant) {
        accessLog.withLock { $0 }?.answered(request, reply, since: started)
    }
}

extension Server {
    /// Writes one `info` line to `logger` per answered request and per ended stream (remote
    /// address, method, path with credential query values redacted, status, bytes, duration);
    /// nil turns the access log off (the default).
    public func setAccessLog(_ logger: Logger?) {
        hub.accessLog.withLock { $0 = logger.map(AccessLog.init(logger:)) }
    }
}
