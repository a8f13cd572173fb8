import Dispatch
import MicroSSE
import MicroSSETestSupport
import Testing

@Suite("Drain and readiness: stopping without a reconnect storm", .serialized)
struct DrainTests {
    @Test("stop sends every stream a retry spread over the drain window, then its final chunk")
    func retrySpreadOnStop() throws {
        let window = 2_000
        let hub = try makeHub { $0.drainWindowMilliseconds = window }
        var streams: [EventStreamClient] = []
        for i in 0..<50 { streams.append(try subscribe(hub, "/events/d\(i % 5)")) }
        try #require(waitForClients(hub, 50))
        try hub.publish("accepted before the stop", to: "d0")
        hub.stop()
        var retries: [Int] = []
        for (i, s) in streams.enumerated() {
            #expect(try s.waitForEnd(), "stream \(i) must end with its final chunk")
            if let retry = s.parser.retry { retries.append(retry) }
        }
        // Every stream got one, within the window, and they are spread over it.
        #expect(retries.count == 50)
        #expect(retries.allSatisfy { (0...window).contains($0) })
        #expect(Set(retries).count > 25, "retry values: \(retries.sorted())")
        #expect(retries.min()! < window / 2 && retries.max()! > window / 2, "retry values: \(retries.sorted())")
        // The event accepted before the stop still reached its subscribers.
        let body = String(decoding: streams[0].body, as: UTF8.self)
        #expect(body.contains("data: accepted before the stop"))
    }

    @Test("a drain window of 0 sends no retry")
    func noWindow() throws {
        let hub = try makeHub { $0.drainWindowMilliseconds = 0 }
        let s = try subscribe(hub, "/events/a")
        try #require(waitForClients(hub, 1))
        hub.stop()
        #expect(try s.waitForEnd())
        #expect(s.parser.retry == nil)
    }

    @Test("/readyz is 200 while serving and 503 with the reason while the server drains")
    func readiness() throws {
        let hub = try makeHub {
            $0.shutdownDrainMilliseconds = 3_000
            $0.drainWindowMilliseconds = 0
        }
        let ready = try httpRequest(port: hub.port, path: "/readyz")
        #expect(ready.status == 200 && ready.text == "ready\n")
        // Keep-alive connections opened before the stop can still ask during the drain (the
        // listening socket is closed by then): one per poll.
        var probes: [RawConnection] = []
        for _ in 0..<40 { probes.append(try RawConnection(port: hub.port)) }
        defer { probes.forEach { $0.close() } }
        // A subscriber that reads nothing while megabytes are pending holds the drain open.
        let stuck = try RawConnection(port: hub.port)
        defer { stuck.close() }
        stuck.setReceiveBuffer(4_096)
        try stuck.send("GET /events/big HTTP/1.1\r\nHost: x\r\n\r\n")
        try #require(waitForClients(hub, 1))
        let chunk = String(repeating: "x", count: 64 << 10)
        for _ in 0..<64 { try hub.publish(chunk, to: "big") }
        let stopped = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            hub.stop()
            stopped.signal()
        }
        var statuses: [Int] = []
        let refused = try eventually(timeout: 2.5) {
            guard !probes.isEmpty else { return false }
            let probe = probes.removeFirst()
            try probe.send("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            let status = try probe.readHead(timeout: 1).status
            statuses.append(status)
            return status == 503
        }
        #expect(refused, "readyz answers while draining: \(statuses)")
        stopped.wait()
    }
}
