import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

/// The route table of docs/HUB.md, one row at a time, over loopback.
@Suite("Hub route table")
struct RouteTableTests {
    @Test("GET /events/{channel} is a stream of that channel with the SSE headers")
    func streamOfOneChannel() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let c = try subscribe(hub, "/events/news")
        #expect(c.head.header("Content-Type")?.hasPrefix("text/event-stream") == true)
        #expect(c.head.header("Cache-Control") == "no-cache")
        #expect(c.head.header("X-Accel-Buffering") == "no")
        #expect(c.head.header("Transfer-Encoding") == "chunked")
        #expect(c.head.header("MicroSSE-Gap") == nil)
        try hub.publish("elsewhere", to: "sports")
        let id = try publishOverHTTP(hub, "news", "hello")
        let e = try #require(try c.next())
        #expect(e == ParsedEvent(data: "hello", lastEventID: id, id: id))
    }

    @Test("GET /events?channel=a&channel=b is one stream of both channels in publish order")
    func streamOfSeveralChannels() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let c = try subscribe(hub, "/events?channel=a&channel=b&channel=a")
        for i in 0..<30 { try hub.publish("\(i)", to: ["a", "b", "c"][i % 3]) }
        let got = try c.events(20).map(\.data)
        #expect(got == (0..<30).filter { $0 % 3 != 2 }.map(String.init))
    }

    @Test("POST /events/{channel} publishes the body with event= and id=; 202 with the JSON id")
    func publishReply() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let c = try subscribe(hub, "/events/orders")
        let r = try post(hub, "orders", "line 1\nline 2", query: "event=created&id=order-7")
        #expect(r.status == 202)
        #expect(r.header("Content-Type") == "application/json")
        #expect(r.text == "{\"id\":\"order-7\"}\n")
        let assigned = try publishOverHTTP(hub, "orders", "")
        #expect(assigned.hasPrefix("~1.0."), "a position the hub issued: \(assigned)")
        let events = try c.events(2)
        #expect(
            events[0] == ParsedEvent(type: "created", data: "line 1\nline 2", lastEventID: "order-7", id: "order-7"))
        #expect(events[1] == ParsedEvent(data: "", lastEventID: assigned, id: assigned))
    }

    @Test("publish without the token gets 401 and publishes nothing")
    func publishToken() throws {
        let hub = try makeHub { $0.publishToken = "s3cret" }
        defer { hub.stop() }
        let c = try subscribe(hub, "/events/a")
        let missing = try post(hub, "a", "nope")
        #expect(missing.status == 401)
        #expect(missing.header("WWW-Authenticate") == "Bearer")
        #expect(isOneLine(missing.text))
        #expect(try post(hub, "a", "nope", token: "s3cre").status == 401)
        #expect(try post(hub, "a", "nope", token: "s3cret2").status == 401)
        #expect(try post(hub, "a", "nope", headers: [("Authorization", "Basic czNjcmV0")]).status == 401)
        #expect(try stats(hub)["published"] == 0)
        #expect(try post(hub, "a", "yes", token: "s3cret").status == 202)
        #expect(try c.next()?.data == "yes")
        #expect(try stats(hub)["published"] == 1)
    }

    @Test("bad channel name, id, event name or UTF-8 get 400 with a one-line reason")
    func badRequests() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let longName = String(repeating: "x", count: 129)
        for path in ["/events/bad!name", "/events/\(longName)", "/events?channel=ok&channel=no%20way", "/events"] {
            let r = try httpRequest(port: hub.port, path: path, headers: [("Accept", "text/event-stream")])
            #expect(r.status == 400, "GET \(path)")
            #expect(isOneLine(r.text), "GET \(path): \(r.text)")
        }
        let cases: [(channel: String, query: String, body: [UInt8])] = [
            ("bad!name", "", Array("x".utf8)),
            ("ok", "id=a%0Ab", Array("x".utf8)),
            ("ok", "id=a%0Db", Array("x".utf8)),
            ("ok", "id=a%00b", Array("x".utf8)),  // a NUL is rejected, not cut off
            ("ok", "id=%FF", Array("x".utf8)),
            ("ok", "event=%C3", Array("x".utf8)),
            ("ok", "event=a%0Ab", Array("x".utf8)),
            ("ok", "", [0x66, 0xFF, 0x6F]),
            ("ok", "", [0xED, 0xA0, 0x80]),  // an encoded surrogate
        ]
        for k in cases {
            let r = try httpRequest(
                port: hub.port, method: "POST", path: "/events/\(k.channel)?\(k.query)", body: k.body)
            #expect(r.status == 400, "POST \(k.channel)?\(k.query)")
            #expect(isOneLine(r.text), "\(r.text)")
        }
        #expect(try stats(hub)["published"] == 0)
    }

    @Test("a body over the publish limit gets 413 with a one-line reason, announced or chunked")
    func bodyTooLarge() throws {
        let hub = try makeHub { $0.maxPublishBytes = 1_000 }
        defer { hub.stop() }
        // Announced: refused as soon as the head arrives, before any body byte is sent.
        let announced = try RawConnection(port: hub.port)
        try announced.send("POST /events/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        let head = try announced.readHead()
        #expect(head.status == 413)
        // Chunked: refused once the body passes the limit.
        let chunked = try RawConnection(port: hub.port)
        let piece = String(repeating: "y", count: 600)
        try chunked.send(
            "POST /events/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "258\r\n\(piece)\r\n258\r\n\(piece)\r\n0\r\n\r\n")
        #expect(try chunked.readHead().status == 413)
        // Exactly at the limit is fine.
        #expect(try post(hub, "a", String(repeating: "z", count: 1_000)).status == 202)
        let r = try post(hub, "a", String(repeating: "z", count: 1_001))
        #expect(r.status == 413)
        #expect(isOneLine(r.text))
        #expect(try stats(hub)["published"] == 1)
    }

    @Test("unknown paths get 404; wrong methods get 405 with Allow")
    func notFoundAndMethodNotAllowed() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        for path in ["/", "/nope", "/events/a/b", "/eventsx", "/healthz/x"] {
            let r = try httpRequest(port: hub.port, path: path)
            #expect(r.status == 404, "GET \(path)")
            #expect(isOneLine(r.text))
        }
        let cases: [(method: String, path: String, allow: String)] = [
            ("PUT", "/events/a", "GET, POST"),
            ("DELETE", "/events/a", "GET, POST"),
            ("POST", "/events?channel=a", "GET"),
            ("POST", "/healthz", "GET"),
            ("DELETE", "/stats", "GET"),
            ("POST", "/metrics", "GET"),
        ]
        for k in cases {
            let r = try httpRequest(port: hub.port, method: k.method, path: k.path)
            #expect(r.status == 405, "\(k.method) \(k.path)")
            #expect(r.header("Allow") == k.allow, "\(k.method) \(k.path)")
        }
    }

    @Test("a server without publishing answers POST with 405 Allow: GET")
    func publishingOff() throws {
        let hub = try makeHub { $0.publishing = false }
        defer { hub.stop() }
        let r = try post(hub, "a", "x")
        #expect(r.status == 405)
        #expect(r.header("Allow") == "GET")
    }

    @Test("GET /healthz is 200 ok")
    func healthz() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let r = try httpRequest(port: hub.port, path: "/healthz")
        #expect(r.status == 200)
        #expect(r.text == "ok\n")
    }

    @Test("GET /stats counts clients, channels, published, delivered, bytes, drops, disconnects")
    func statsCounters() throws {
        // Heartbeats on: a peer that left is found by the next write (docs/DESIGN.md: dead suspended peers).
        let hub = try makeHub { $0.heartbeatSeconds = 1 }
        defer { hub.stop() }
        let a = try subscribe(hub, "/events/a")
        let ab = try subscribe(hub, "/events?channel=a&channel=b")
        for i in 0..<3 { try hub.publish("\(i)", to: "a") }
        try hub.publish("b", to: "b")
        _ = try a.events(3)
        _ = try ab.events(4)
        let r = try httpRequest(port: hub.port, path: "/stats")
        #expect(r.status == 200)
        #expect(r.header("Content-Type") == "application/json")
        var s = try stats(hub)
        #expect(Set(s.keys) == ["clients", "channels", "published", "delivered", "bytes", "drops", "disconnects"])
        #expect(s["clients"] == 2)
        #expect(s["channels"] == 2)
        #expect(s["published"] == 4)
        #expect(eventually { hub.statistics.delivered == 7 })
        #expect(try stats(hub)["bytes"] == a.body.count + ab.body.count)
        #expect(s["drops"] == 0)
        a.connection.reset()
        #expect(eventually(timeout: 10) { hub.statistics.disconnects == 1 })
        s = try stats(hub)
        #expect(s["clients"] == 1)
        #expect(s["disconnects"] == 1)
    }

    @Test("GET /metrics has the same counters in Prometheus text format")
    func metrics() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let c = try subscribe(hub, "/events/a")
        try hub.publish("x", to: "a")
        _ = try c.next()
        #expect(eventually { hub.statistics.delivered == 1 })
        let r = try httpRequest(port: hub.port, path: "/metrics")
        #expect(r.status == 200)
        #expect(r.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        var values: [String: Double] = [:]
        var typed: Set<String> = []
        for line in r.text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                #expect(parts.count == 4 && ["counter", "gauge", "histogram"].contains(parts[3]))
                typed.insert(String(parts[2]))
            } else if !line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                #expect(parts.count == 2, "sample line: \(line)")
                values[String(parts[0])] = Double(parts[1])
            }
        }
        // Every series belongs to a typed metric (labels and histogram suffixes aside).
        for series in values.keys {
            var base = String(series.split(separator: "{", maxSplits: 1)[0])
            for suffix in ["_bucket", "_sum", "_count"] where !typed.contains(base) && base.hasSuffix(suffix) {
                base = String(base.dropLast(suffix.count))
            }
            #expect(typed.contains(base), "untyped series \(series)")
        }
        #expect(values["microsse_clients"] == 1)
        #expect(values["microsse_channels"] == 1)
        #expect(values["microsse_events_published_total"] == 1)
        #expect(values["microsse_events_delivered_total"] == 1)
        #expect(values["microsse_stream_bytes_total"] == Double(c.body.count))
        #expect(values["microsse_drops_total"] == 0)
        #expect(values["microsse_disconnects_total"] == 0)
    }

    @Test("no CORS by default: no Access-Control headers, preflight refused")
    func corsOffByDefault() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let c = try subscribe(hub, "/events/a", headers: [("Origin", "https://app.example")])
        #expect(c.head.headers.allSatisfy { !$0.name.lowercased().hasPrefix("access-control-") })
        let pre = try httpRequest(
            port: hub.port, method: "OPTIONS", path: "/events/a",
            headers: [("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET")])
        #expect(pre.status == 403)
        #expect(pre.header("Access-Control-Allow-Origin") == nil)
    }

    @Test("an allowed origin gets a preflight allowing Last-Event-ID and Authorization; others are refused")
    func corsAllowedAndRefused() throws {
        let hub = try makeHub { $0.corsOrigins = ["https://app.example"] }
        defer { hub.stop() }
        let pre = try httpRequest(
            port: hub.port, method: "OPTIONS", path: "/events/a",
            headers: [
                ("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "last-event-id, authorization"),
            ])
        #expect(pre.status == 204)
        #expect(pre.header("Access-Control-Allow-Origin") == "https://app.example")
        let allowed = (pre.header("Access-Control-Allow-Headers") ?? "").lowercased()
        #expect(allowed.contains("last-event-id") && allowed.contains("authorization"))
        #expect((pre.header("Access-Control-Allow-Methods") ?? "").contains("GET"))

        let c = try subscribe(hub, "/events/a", headers: [("Origin", "https://app.example")])
        #expect(c.head.header("Access-Control-Allow-Origin") == "https://app.example")
        #expect(c.head.header("Access-Control-Expose-Headers")?.contains("MicroSSE-Gap") == true)

        let refused = try httpRequest(
            port: hub.port, method: "OPTIONS", path: "/events/a",
            headers: [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "GET")])
        #expect(refused.status == 403)
        #expect(refused.header("Access-Control-Allow-Origin") == nil)
        let other = try subscribe(hub, "/events/a", headers: [("Origin", "https://evil.example")])
        #expect(other.head.header("Access-Control-Allow-Origin") == nil)
        // The answer depends on Origin either way, so caches are told so.
        #expect(c.head.header("Vary") == "Origin")
        #expect(other.head.header("Vary") == "Origin")
        #expect(refused.header("Vary") == "Origin")
    }

    @Test("a subscriber over max clients gets 503 with Retry-After; the others keep streaming")
    func maxClients() throws {
        let hub = try makeHub {
            $0.maxClients = 2
            $0.heartbeatSeconds = 1  // so the peer that leaves is found
        }
        defer { hub.stop() }
        let first = try subscribe(hub, "/events/a")
        let second = try subscribe(hub, "/events/a")
        #expect(waitForClients(hub, 2))
        let third = try EventStreamClient(port: hub.port, path: "/events/a")
        #expect(third.status == 503)
        #expect(third.head.header("Retry-After") != nil)
        #expect(try publishOverHTTP(hub, "a", "still here") != "")
        #expect(try first.next()?.data == "still here")
        #expect(try second.next()?.data == "still here")
        #expect(try httpRequest(port: hub.port, path: "/healthz").status == 200)
        first.connection.reset()
        #expect(waitForClients(hub, 1, timeout: 10))
        let again = try subscribe(hub, "/events/a")
        try hub.publish("welcome", to: "a")
        #expect(try again.next()?.data == "welcome")
        #expect(hub.statistics.drops == 0)
    }
}
