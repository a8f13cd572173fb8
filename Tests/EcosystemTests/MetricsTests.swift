import MetricsTestKit
import MicroSSE
import MicroSSETestSupport
import Testing

@Suite("metrics: GET /metrics by swift-prometheus, and a swift-metrics backend")
struct MetricsTests {
    private static let names = [
        "microsse_clients", "microsse_channels", "microsse_events_published_total",
        "microsse_events_delivered_total", "microsse_stream_bytes_total", "microsse_drops_total",
        "microsse_disconnects_total", "microsse_streams_opened_total", "microsse_publish_duration_seconds",
    ]

    private func scrape(_ server: Server) throws -> String {
        let response = try httpRequest(port: server.port, path: "/metrics")
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        return response.text
    }

    @Test("/metrics over loopback: the historic names, values that follow publishes and streams")
    func scrapeFollowsPublishes() throws {
        var config = ServerConfiguration()
        config.port = 0
        config.heartbeatSeconds = 1  // a closed idle stream is noticed at its next write
        let server = try Server(validating: config)
        try server.start()
        defer { server.stop() }

        let before = try scrape(server)
        for name in Self.names { #expect(before.contains("# TYPE \(name) "), "missing \(name)") }
        #expect(sample("microsse_events_published_total", in: before) == 0)

        let stream = try EventStreamClient(port: server.port, path: "/events/news")
        #expect(eventually { server.statistics.clients == 1 })
        for i in 0..<3 { try server.publish("event \(i)", to: "news") }
        #expect(try stream.events(3).count == 3)
        #expect(eventually { server.statistics.delivered == 3 })

        let after = try scrape(server)
        #expect(sample("microsse_events_published_total", in: after) == 3)
        #expect(sample("microsse_events_delivered_total", in: after) == 3)
        #expect(sample("microsse_clients", in: after) == 1)
        #expect(sample("microsse_channels", in: after) == 1)
        #expect(sample("microsse_streams_opened_total", in: after) == 1)
        #expect(sample("microsse_publish_duration_seconds_count", in: after) == 3)
        #expect((sample("microsse_stream_bytes_total", in: after) ?? 0) >= Double(server.statistics.bytes))

        stream.close()
        #expect(eventually { server.statistics.disconnects == 1 })
        let closed = try scrape(server)
        #expect(sample("microsse_disconnects_total", in: closed) == 1)
        #expect(sample("microsse_clients", in: closed) == 0)
    }

    @Test("a resume the server cannot place counts a gap by reason")
    func gapsByReason() throws {
        var config = ServerConfiguration()
        config.port = 0
        let server = try Server(validating: config)
        try server.start()
        defer { server.stop() }
        let stream = try EventStreamClient(
            port: server.port, path: "/events/news", headers: [("Last-Event-ID", "nope")])
        #expect(stream.head.header("MicroSSE-Gap") == "unknown")
        let text = try scrape(server)
        #expect(sample("microsse_gaps_total{reason=\"unknown\"}", in: text) == 1)
        #expect(sample("microsse_gaps_total{reason=\"evicted\"}", in: text) == 0)
    }

    @Test("the embedding app's swift-metrics backend receives the same metrics")
    func swiftMetricsBackend() throws {
        let backend = TestMetrics()
        var config = ServerConfiguration()
        config.port = 0
        let server = try Server(validating: config, metricsFactory: backend)
        try server.start()
        let stream = try EventStreamClient(port: server.port, path: "/events/news")
        #expect(eventually { server.statistics.clients == 1 })
        try server.publish("one", to: "news")
        try server.publish("two", to: "news")
        #expect(try stream.events(2).count == 2)
        #expect(eventually { server.statistics.delivered == 2 })
        server.stop()  // takes a last sample
        #expect(try backend.expectCounter("microsse_events_published_total").totalValue == 2)
        #expect(try backend.expectCounter("microsse_events_delivered_total").totalValue == 2)
        #expect(try backend.expectCounter("microsse_streams_opened_total").totalValue == 1)
        #expect(try backend.expectCounter("microsse_disconnects_total").totalValue == 1)
        #expect(try backend.expectTimer("microsse_publish_duration_seconds").values.count == 2)
        #expect(try backend.expectGauge("microsse_clients").lastValue == 0)
    }
}
