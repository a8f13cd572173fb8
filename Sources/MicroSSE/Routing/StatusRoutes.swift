import MicroSSETransport
import MicroSSEWire

/// `GET /healthz` (liveness, never authorized), `GET /stats` (JSON) and `GET /metrics`
/// (Prometheus text); the last two go through the authorizer as `.route(path:)`.
enum StatusRoutes {
    static let routes: [Route] = [
        Route(match: .exact("/healthz"), methods: ["GET"]) { _, _ in .response(.text("ok")) },
        Route(match: .exact("/stats"), methods: ["GET"]) { request, router in
            if let refusal = router.authorize(request, .route(path: request.path)) { return .response(refusal) }
            return .response(.json(statsJSON(router.hub.statistics())))
        },
        Route(match: .exact("/metrics"), methods: ["GET"]) { request, router in
            if let refusal = router.authorize(request, .route(path: request.path)) { return .response(refusal) }
            return .response(
                Response(
                    status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                    body: Array(prometheusText(router.hub.statistics()).utf8)))
        },
    ]

    static func statsJSON(_ s: Statistics) -> String {
        JSON.object([
            ("clients", String(s.clients)), ("channels", String(s.channels)), ("published", String(s.published)),
            ("delivered", String(s.delivered)), ("bytes", String(s.bytes)), ("drops", String(s.drops)),
            ("disconnects", String(s.disconnects)),
        ])
    }

    /// The counters of ``statsJSON(_:)`` in the Prometheus text exposition format (version 0.0.4).
    static func prometheusText(_ s: Statistics) -> String {
        let metrics: [(name: String, type: String, help: String, value: Int)] = [
            ("microsse_clients", "gauge", "Streams open now.", s.clients),
            ("microsse_channels", "gauge", "Channels with history or subscribers.", s.channels),
            ("microsse_events_published_total", "counter", "Events published to channels.", s.published),
            (
                "microsse_events_delivered_total", "counter", "Events written to streams (one per subscriber).",
                s.delivered
            ),
            ("microsse_stream_bytes_total", "counter", "Stream bytes written to sockets.", s.bytes),
            ("microsse_drops_total", "counter", "Streams disconnected for falling behind.", s.drops),
            ("microsse_disconnects_total", "counter", "Streams ended, for any reason.", s.disconnects),
        ]
        var out = ""
        for m in metrics {
            out += "# HELP \(m.name) \(m.help)\n# TYPE \(m.name) \(m.type)\n\(m.name) \(m.value)\n"
        }
        return out
    }
}
