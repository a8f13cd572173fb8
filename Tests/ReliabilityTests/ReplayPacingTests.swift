import MicroSSE
import MicroSSECore
import MicroSSETestSupport
import Synchronization
import Testing

/// Replays paced per turn of libmicrohttpd's loop (docs/DESIGN.md, "Replay through cursors"):
/// while many streams replay at once, each content-reader call writes only a share of its buffer,
/// so frames are cut across calls; every event still arrives once, in order.
@Suite("Paced replays")
struct ReplayPacingTests {
    @Test("64 streams resuming 4 channels of 300 events at once each get all 1,199, in order")
    func manyReplaysComplete() throws {
        let server = try makeServer { $0.publishing = true }
        defer { server.stop() }
        let channels = ["a", "b", "c", "d"]
        var ids: [String] = []
        var data: [String] = []
        for i in 0..<300 {
            for c in channels {
                // ~120 bytes a frame: a stream's replay (~140 KB) spans many paced reads.
                let body = "\(c)\(i) " + String(repeating: "x", count: 100)
                ids.append(try server.publish(Event(data: body), to: c))
                data.append(body)
            }
        }
        let path = "/events?" + channels.map { "channel=\($0)" }.joined(separator: "&")
        let streams = try (0..<64).map { _ in
            try EventStreamClient(port: server.port, path: path, headers: [("Last-Event-ID", ids[0])])
        }
        for s in streams {
            #expect(s.status == 200)
            let events = try s.events(data.count - 1, timeout: 60)
            #expect(events.map(\.data) == Array(data.dropFirst()))
            s.close()
        }
    }
}
