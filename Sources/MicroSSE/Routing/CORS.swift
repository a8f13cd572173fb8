import MicroSSETransport

/// Cross-origin reads: which origins may read answers, the preflight, and the headers added to
/// every answer. A CORS list controls who may *read*; it does not stop a browser from *sending*.
struct CORSPolicy: Sendable {
    let origins: [String]

    /// The `Access-Control-Allow-Origin` value for this request, or nil when not allowed.
    func allowedOrigin(for request: Request) -> String? {
        guard let origin = request.header("Origin") else { return nil }
        if origins.contains(origin) { return origin }
        return origins.contains("*") ? "*" : nil
    }

    /// Whether a page of `origin` may publish: an origin in the list (or `*`), or the server's
    /// own origin (its scheme-less authority equals the request's `Host`, as for a page the
    /// server itself serves).
    func allowsPublish(from origin: String, _ request: Request) -> Bool {
        if origins.contains(origin) || origins.contains("*") { return true }
        guard let host = request.header("Host") else { return false }
        for scheme in ["http://", "https://"] where origin.hasPrefix(scheme) {
            let authority = String(origin.dropFirst(scheme.count))
            return !authority.isEmpty && asciiCaseInsensitiveEquals(authority, host)
        }
        return false
    }

    /// The answer to an `OPTIONS` preflight.
    func preflight(allowed: Bool) -> Response {
        guard allowed else { return .text("origin not allowed", status: 403) }
        var r = Response(status: 204)
        r.headers += [
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", "Last-Event-ID, Authorization, Content-Type, Cache-Control"),
            ("Access-Control-Max-Age", "86400"),
        ]
        return r
    }

    /// `reply` with the CORS headers: `Vary: Origin` on every answer once origins are configured
    /// (caches must know the answer depends on it), and the allow/expose headers for an allowed one.
    func decorate(_ reply: TransportReply, origin: String?) -> TransportReply {
        var cors: [(name: String, value: String)] = origins.isEmpty ? [] : [("Vary", "Origin")]
        if let origin {
            cors += [
                ("Access-Control-Allow-Origin", origin),
                (
                    "Access-Control-Expose-Headers",
                    "\(ChannelRoutes.gapHeader), \(ChannelRoutes.replicatedHeader), Retry-After"
                ),
            ]
            // Credentials (cookies, Authorization) only for an origin echoed from the list:
            // browsers refuse them with `*`, and `*` must not let any site read with them.
            if origin != "*" { cors.append(("Access-Control-Allow-Credentials", "true")) }
        }
        guard !cors.isEmpty else { return reply }
        switch reply {
        case .response(var r):
            r.headers += cors
            return .response(r)
        case .stream(let headers, let sub, let onClose):
            return .stream(headers: headers + cors, subscriber: sub, onClose: onClose)
        case .deferred(let later):
            later.transform { [self] in decorate($0, origin: origin) }
            return reply
        }
    }
}
