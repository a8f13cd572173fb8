import MicroSSEWire

/// A complete (non-streaming) HTTP response returned by a route.
public struct Response: Sendable {
    /// The status code, e.g. 200.
    public var status: Int
    /// Headers to send; `Content-Length` is added by the server.
    public var headers: [(name: String, value: String)]
    /// The body bytes.
    public var body: [UInt8]

    /// Creates a response.
    public init(status: Int = 200, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A `text/plain; charset=utf-8` response; a trailing newline is added when missing.
    public static func text(_ text: String, status: Int = 200) -> Response {
        let body = text.hasSuffix("\n") ? text : text + "\n"
        return Response(
            status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(body.utf8))
    }

    /// A `text/html; charset=utf-8` response.
    public static func html(_ html: String, status: Int = 200) -> Response {
        Response(status: status, headers: [("Content-Type", "text/html; charset=utf-8")], body: Array(html.utf8))
    }

    /// An `application/json` response from JSON text.
    public static func json(_ json: String, status: Int = 200) -> Response {
        Response(status: status, headers: [("Content-Type", "application/json")], body: Array((json + "\n").utf8))
    }

    /// Throws `.invalidArgument` unless `status` is an HTTP status code, 100–599. The server
    /// answers `500` instead of sending a response whose status fails this check.
    public static func validateStatus(_ status: Int) throws(MicroSSEError) {
        guard (100...599).contains(status) else {
            throw MicroSSEError(.invalidArgument, "status must be 100-599 (got \(status))")
        }
    }

    /// Throws `.invalidArgument` unless `name: value` is a header that cannot split a response:
    /// a non-empty token name (no CR, LF, NUL, space or `:`), a value without CR, LF or NUL.
    /// The server answers `500` instead of sending a response whose header fails this check.
    public static func validateHeader(name: String, value: String) throws(MicroSSEError) {
        let badName = name.utf8.contains { $0 <= 0x20 || $0 == 0x3A || $0 == 0x7F }
        guard !name.isEmpty, !badName else {
            throw MicroSSEError(.invalidArgument, "header name must be non-empty without CR, LF, NUL, space or ':'")
        }
        guard !value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
            throw MicroSSEError(.invalidArgument, "header value must not contain CR, LF or NUL")
        }
    }

    /// ``validateHeader(name:value:)`` for every header of this response.
    public func validateHeaders() throws(MicroSSEError) {
        for (name, value) in headers { try Self.validateHeader(name: name, value: value) }
    }
}
