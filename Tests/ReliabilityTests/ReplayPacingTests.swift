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

/// The region an idle stream gives back is the whole buffer libmicrohttpd handed its reader, even
/// when a paced read filled only part of it (else the pages a full read had touched stayed
/// resident: 15 KB per stream in scripts/resume-memory.py).
@Suite("Paced reads and the release pass")
struct PacedReadReleaseTests {
    @Test("a read filling 2 KiB of a 32 KiB buffer leaves the whole buffer's pages to give back")
    func pacedReadKeepsRegion() throws {
        let subscriber = Subscriber(channels: [try ChannelName("c")], limit: 1 << 20)
        let allocation = UnsafeMutableRawBufferPointer.allocate(byteCount: 32_768, alignment: 4_096)
        defer { allocation.deallocate() }
        let released = Mutex(0)
        func pass() -> Int {
            subscriber.visitIdle(pageSize: 4_096) { _, n in released.withLock { $0 += n } }.released
        }
        let event = Frame(bytes: Array(("data: " + String(repeating: "z", count: 3_000) + "\n\n").utf8), isEvent: true)
        _ = subscriber.enqueue(event)
        // Paced: 2 KiB of the 32 KiB buffer per call, until the event is out.
        #expect(
            subscriber.read(into: allocation, filling: 2_048, onSuspend: {}, onListing: {})
                == .wrote(bytes: 2_048, events: 0))
        #expect(
            subscriber.read(into: allocation, filling: 2_048, onSuspend: {}, onListing: {})
                == .wrote(bytes: 960, events: 1))
        #expect(subscriber.read(into: allocation, filling: 2_048, onSuspend: {}, onListing: {}) == .suspend)
        #expect(pass() == 0, "the first pass only marks")
        #expect(pass() == 32_768, "the whole buffer, not the 2 KiB filled")
    }
}
