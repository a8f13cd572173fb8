import MicroSSETransport
import MicroSSEWire

/// `GET /healthz` (liveness, never authorized), `GET /readyz` (readiness, never authorized:
/// `200` while serving, `503` with the reason while stopping or while the broker's backend is
/// unreachable), `GET /stats` (JSON) and `GET /metrics`
/// (Prometheus text, rendered by swift-prometheus from the server's registry, ``HubMetrics``);
/// the last two need ``ServerConfiguration/statsToken`` as a bearer token when it is set, then
/// go through the authorizer as `.route(path:)`.
enum StatusRoutes {
    static let routes: [Route] = [
        Route(match: .exact("/healthz"), methods: ["GET"]) { _, _ in .response(.text("ok")) },
        Route(match: .exact("/readyz"), methods: ["GET"]) { _, router in
            if router.hub.draining.load(ordering: .relaxed) {
                return .response(.text("not ready: the server is stopping", status: 503))
            }
            if let reason = router.hub.broker.unavailableReason {
                return .response(.text("not ready: \(reason)", status: 503))
            }
            return .response(.text("ready"))
        },
        Route(match: .exact("/stats"), methods: ["GET"]) { request, router in
            if let refusal = checkStatsToken(request, router) { return .response(refusal) }
            if let refusal = router.authorize(request, .route(path: request.path)) { return .response(refusal) }
            return .response(.json(statsJSON(router.hub.statistics())))
        },
        Route(match: .exact("/metrics"), methods: ["GET"]) { request, router in
            if let refusal = checkStatsToken(request, router) { return .response(refusal) }
            if let refusal = router.authorize(request, .route(path: request.path)) { return .response(refusal) }
            return .response(
                Response(
                    status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                    body: router.hub.metrics.exposition(router.hub)))
        },
    ]

    /// `401` unless the request carries the configured stats token (none configured: nil).
    static func checkStatsToken(_ request: Request, _ router: Router) -> Response? {
        guard let token = router.hub.configuration.statsToken else { return nil }
        if let given = bearerToken(request), constantTimeEquals(given, token) { return nil }
        var r = Response.text("\(request.path) needs Authorization: Bearer <stats token>", status: 401)
        r.headers.append(("WWW-Authenticate", "Bearer"))
        return r
    }

    static func statsJSON(_ s: Statistics) -> String {
        JSON.object([
            ("clients", String(s.clients)), ("channels", String(s.channels)), ("published", String(s.published)),
            ("delivered", String(s.delivered)), ("bytes", String(s.bytes)), ("drops", String(s.drops)),
            ("disconnects", String(s.disconnects)),
        ])
    }
}
