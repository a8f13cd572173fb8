import Foundation
import MicroSSE
import MicroSSETestSupport
import Synchronization
import Testing

/// docs/RESUME.md (ids, history and the gap signal), over loopback.
@Suite("Hub streams and resume")
struct ResumeTests {
    @Test("500 events reach two subscribers complete and in order")
    func fiveHundredEventsTwoSubscribers() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let a = try subscribe(hub, "/events/feed")
        let b = try subscribe(hub, "/events/feed")
        var ids: [String] = []
        for i in 0..<500 { ids.append(try hub.publish("event \(i)", to: "feed")) }
        for c in [a, b] {
            let got = try c.events(500)
            #expect(got.map(\.data) == (0..<500).map { "event \($0)" })
            #expect(got.map(\.id) == ids)
        }
        let positions = ids.map { offset($0) }
        #expect(positions == positions.sorted() && Set(positions).count == 500)
    }

    @Test("resume with the Last-Event-ID header from the middle of history")
    func resumeByHeader() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let ids = try (0..<20).map { try hub.publish("e\($0)", to: "a") }
        let c = try subscribe(hub, "/events/a", headers: [("Last-Event-ID", ids[11])])
        #expect(c.head.header("MicroSSE-Gap") == nil)
        try hub.publish("e20", to: "a")
        let got = try c.events(9)
        #expect(got.map(\.data) == (12...20).map { "e\($0)" })
        #expect(got.first?.id == ids[12])
    }

    @Test("resume with the lastEventId query parameter from the middle of history")
    func resumeByQuery() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let ids = try (0..<20).map { try hub.publish("e\($0)", to: "a") }
        let c = try subscribe(hub, "/events/a?lastEventId=\(ids[4])")
        #expect(c.head.header("MicroSSE-Gap") == nil)
        #expect(try c.events(15).map(\.data) == (5..<20).map { "e\($0)" })
        let multi = try subscribe(hub, "/events?channel=a&channel=b&lastEventId=\(ids[17])")
        try hub.publish("b0", to: "b")
        #expect(try multi.events(3).map(\.data) == ["e18", "e19", "b0"])
    }

    @Test("the header wins over the query parameter")
    func headerWinsOverQuery() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let ids = try (0..<5).map { try hub.publish("e\($0)", to: "a") }
        let c = try subscribe(hub, "/events/a?lastEventId=\(ids[0])", headers: [("Last-Event-ID", ids[3])])
        #expect(try c.events(1).map(\.data) == ["e4"])
    }

    @Test("reconnecting at the seam while publishers keep publishing: no duplicate, no gap")
    func seamUnderConcurrentPublishing() throws {
        let hub = try makeHub { $0.historyCount = 100_000 }
        defer { hub.stop() }
        let total = 3_000
        var c = try subscribe(hub, "/events/seam")
        let stop = Flag()
        let publisher = Worker {
            for i in 0..<total where !stop.isSet {
                _ = try? hub.publish("\(i)", to: "seam")
                if i % 50 == 0 { usleep(200) }  // let the reader reconnect while publishing goes on
            }
        }
        defer {
            stop.set()
            publisher.join()
        }
        var received: [Int] = []
        var lastID: String?
        var reconnects = 0
        let deadline = now() + 30
        while received.count < total && now() < deadline {
            // Read a few events, then drop the connection mid-stream and resume from the last id.
            for _ in 0..<(37 + reconnects % 5) {
                guard let e = try c.next(timeout: 5) else { break }
                received.append(Int(e.data)!)
                lastID = e.id
                if received.count == total { break }
            }
            c.connection.reset()
            reconnects += 1
            guard received.count < total, let lastID else { break }
            c = try subscribe(hub, "/events/seam", headers: [("Last-Event-ID", lastID)])
            #expect(c.head.header("MicroSSE-Gap") == nil)
        }
        #expect(reconnects > 10)
        #expect(received.count == total)
        let firstWrong = zip(received, 0...).first { $0.0 != $0.1 }
        #expect(firstWrong == nil, "event \(firstWrong?.1 ?? 0) arrived as \(firstWrong?.0 ?? 0)")
    }

    @Test("resume from an evicted id: MicroSSE-Gap: evicted and a microsse.gap event first, no duplicate")
    func resumeFromEvictedID() throws {
        let hub = try makeHub { $0.historyCount = 5 }
        defer { hub.stop() }
        let ids = try (0..<12).map { try hub.publish("e\($0)", to: "a") }
        let c = try subscribe(hub, "/events/a", headers: [("Last-Event-ID", ids[3])])
        #expect(c.head.header("MicroSSE-Gap") == "evicted")
        let events = try c.events(6)
        #expect(events[0].type == "microsse.gap")
        #expect(events[0].id == nil)
        let gap = try JSONSerialization.jsonObject(with: Data(events[0].data.utf8)) as? [String: String]
        #expect(gap == ["lastEventId": ids[3], "reason": "evicted"])
        #expect(events.dropFirst().map(\.data) == (7..<12).map { "e\($0)" })
        // The gap event carries no id, so the client's last id only moves with real events.
        #expect(events[1].lastEventID == ids[7])
    }

    @Test("resume from an unknown id: MicroSSE-Gap: unknown, a microsse.gap event, no replay")
    func resumeFromUnknownID() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        for i in 0..<3 { try hub.publish("e\(i)", to: "a") }
        let c = try subscribe(hub, "/events/a?lastEventId=no-such-id")
        #expect(c.head.header("MicroSSE-Gap") == "unknown")
        try hub.publish("live", to: "a")
        let events = try c.events(2)
        #expect(events[0].type == "microsse.gap")
        let gap = try JSONSerialization.jsonObject(with: Data(events[0].data.utf8)) as? [String: String]
        #expect(gap == ["lastEventId": "no-such-id", "reason": "unknown"])
        #expect(events[1].data == "live")
    }

    @Test("ids stay meaningful across a restart: an id from before gets the gap signal")
    func idsAcrossRestart() throws {
        let first = try makeHub()
        let old = try (0..<3).map { try first.publish("old\($0)", to: "a") }
        first.stop()
        let second = try makeHub()
        defer { second.stop() }
        let new = try second.publish("new0", to: "a")
        #expect(!old.contains(new) && epoch(new) != epoch(old[0]), "a new epoch: ids never repeat")
        let c = try subscribe(second, "/events/a", headers: [("Last-Event-ID", old[1])])
        #expect(c.head.header("MicroSSE-Gap") == "evicted")
        let events = try c.events(2)
        #expect(events.map(\.type) == ["microsse.gap", "message"])
        #expect(events[1].data == "new0")
        // A channel with no event since the restart says so too.
        let quiet = try subscribe(second, "/events/quiet", headers: [("Last-Event-ID", old[2])])
        #expect(quiet.head.header("MicroSSE-Gap") == "evicted")
    }

    @Test("history is bounded by count and by bytes")
    func historyBounds() throws {
        let byCount = try makeHub { $0.historyCount = 10 }
        defer { byCount.stop() }
        let first = try byCount.publish("first", to: "a")
        for i in 0..<100 { try byCount.publish("e\(i)", to: "a") }
        let c = try subscribe(byCount, "/events/a", headers: [("Last-Event-ID", first)])
        #expect(c.head.header("MicroSSE-Gap") == "evicted")
        #expect(try c.events(11).dropFirst().map(\.data) == (90..<100).map { "e\($0)" })

        let byBytes = try makeHub { $0.historyBytes = 10_000 }
        defer { byBytes.stop() }
        let start = try byBytes.publish("first", to: "a")
        // 1,000 bytes per frame: "id: " + 16 digits + LF, "data: " + payload + LF, LF.
        let payload = String(repeating: "p", count: 971)
        for _ in 0..<50 { try byBytes.publish(payload, to: "a") }
        let d = try subscribe(byBytes, "/events/a", headers: [("Last-Event-ID", start)])
        #expect(d.head.header("MicroSSE-Gap") == "evicted")
        try byBytes.publish("live", to: "a")
        // The replay is read from the history as the stream drains (docs/DESIGN.md, "Replay
        // through cursors"): "live" evicts the oldest payload, replayed or not yet.
        var events: [ParsedEvent] = []
        while let e = try d.next(timeout: 10) {
            events.append(e)
            if e.data == "live" { break }
        }
        #expect(events.first?.type == "microsse.gap")
        let payloads = events.dropFirst().dropLast()
        #expect(payloads.allSatisfy { $0.data == payload } && (9...10).contains(payloads.count), "\(payloads.count)")
        #expect(events.last?.data == "live")
        #expect(try d.next(timeout: 0.2) == nil)
    }

    @Test("8 threads publishing concurrently over HTTP lose nothing; ids are unique and in stream order")
    func concurrentPublishers() throws {
        let hub = try makeHub()
        defer { hub.stop() }
        let c = try subscribe(hub, "/events/busy")
        let threads = 8
        let each = 60
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for i in 0..<each {
                if (try? post(hub, "busy", "\(t):\(i)").status) != 202 { failures.add(1, ordering: .relaxed) }
            }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
        let events = try c.events(threads * each, timeout: 20)
        var next = [Int](repeating: 0, count: threads)
        for e in events {
            let parts = e.data.split(separator: ":").map { Int($0)! }
            #expect(parts[1] == next[parts[0]], "thread \(parts[0]) out of order")
            next[parts[0]] = parts[1] + 1
        }
        #expect(next == [Int](repeating: each, count: threads))
        let ids = events.map { offset($0.id!) }
        #expect(ids == ids.sorted() && Set(ids).count == ids.count)
        #expect(try c.next(timeout: 0.2) == nil)
    }
}

/// The offset of a hub id (`~1.0.EPOCH.OFFSET`, see docs/DESIGN.md "Positions, labels and epochs").
func offset(_ id: String) -> UInt64 {
    UInt64(id.split(separator: ".").last.map(String.init) ?? "", radix: 36) ?? 0
}

/// The epoch of a hub id.
func epoch(_ id: String) -> String {
    let parts = id.split(separator: ".")
    return parts.count == 4 ? String(parts[2]) : ""
}
