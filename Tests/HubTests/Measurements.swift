import Foundation
import MicroSSE
import Testing

@testable import MicroSSETestSupport

/// Figures for the issue note, not assertions: run with
/// `MICROSSE_MEASURE=1 swift test --filter HubTests.Measurements` (use `-c release` for
/// release numbers). Timed assertions do not belong in tests, so these only print.
@Suite("Measurements", .serialized, .enabled(if: ProcessInfo.processInfo.environment["MICROSSE_MEASURE"] != nil))
struct Measurements {
    @Test("publish cost with 0, 100 and 1,000 subscribers")
    func publishCost() throws {
        for subscribers in [0, 100, 1_000] {
            let hub = try makeHub { $0.historyCount = 1_000 }
            defer { hub.stop() }
            // Subscribers over loopback; drained below so every delivery reaches a socket.
            var clients: [EventStreamClient] = []
            for _ in 0..<subscribers { clients.append(try subscribe(hub, "/events/m")) }
            #expect(waitForClients(hub, subscribers, timeout: 30))
            let n = subscribers == 0 ? 20_000 : 1_000
            let payload = String(repeating: "x", count: 100)
            let start = now()
            for _ in 0..<n { try hub.publish(payload, to: "m") }
            let elapsed = now() - start
            let done = eventually(timeout: 60) {
                for c in clients { _ = try? c.connection.readAvailable(deadline: now()) }
                return hub.statistics.delivered >= n * subscribers
            }
            let total = now() - start
            let perCall = String(format: "%.2f", elapsed / Double(n) * 1e6)
            var line = "publish, \(subscribers) subscribers: \(perCall) µs per publish call"
            if subscribers > 0 {
                let perDelivery = String(format: "%.2f", total / Double(n * subscribers) * 1e6)
                line += "; \(n * subscribers) deliveries in \(String(format: "%.3f", total)) s"
                line += " (\(perDelivery) µs each)" + (done ? "" : " INCOMPLETE")
            }
            print(line)
            for c in clients { c.close() }
        }
    }

    @Test("time to reap a dead peer with --heartbeat 1")
    func reapTime() throws {
        let hub = try makeHub { $0.heartbeatSeconds = 1 }
        defer { hub.stop() }
        for (how, close) in [("FIN", { (c: EventStreamClient) in c.close() }), ("RST", { $0.connection.reset() })] {
            var samples: [Double] = []
            for _ in 0..<5 {
                let c = try subscribe(hub, "/events/r")
                #expect(waitForClients(hub, 1))
                let start = now()
                close(c)
                #expect(eventually(timeout: 30) { hub.statistics.clients == 0 })
                samples.append(now() - start)
            }
            print("reap after \(how): " + samples.map { String(format: "%.2f s", $0) }.joined(separator: ", "))
        }
    }
}
