import Foundation
import MicroSSE
import MicroSSEMercure
import MicroSSETestSupport
import Testing

@Suite("Mercure: resume and the cursor header")
struct ResumeTests {
    /// Publishes `topics` in order (one update each); returns the ids.
    private func publishAll(_ hub: Server, _ topics: [(String, Bool)]) throws -> [String] {
        let token = token08(publish: ["*"])
        return try topics.map { topic, isPrivate in
            var fields = [("topic", topic), ("data", topic)]
            if isPrivate { fields.append(("private", "on")) }
            let r = try publish(hub, fields, token: token)
            #expect(r.status == 200)
            return r.text
        }
    }

    @Test("Last-Event-ID replays every later matching update, then live; Mercure-Last-Event-ID names the id")
    func resumeFromHeader() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let ids = try publishAll(hub, [("a", false), ("b", false), ("a", false), ("a", false)])
        let s = try subscribe(hub, [("match", "a")], headers: [("Last-Event-ID", ids[0])])
        defer { s.close() }
        #expect(s.head.header("Mercure-Last-Event-ID") == ids[0])
        let live = try publishAll(hub, [("a", false)])
        #expect(try s.events(3).map(\.id) == [ids[2], ids[3], live[0]])
    }

    @Test("last_event_id in the query works; the header wins over it")
    func resumeFromQuery() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let ids = try publishAll(hub, [("a", false), ("a", false), ("a", false)])
        let q = try subscribe(hub, [("match", "a"), ("last_event_id", ids[1])])
        defer { q.close() }
        #expect(q.head.header("Mercure-Last-Event-ID") == ids[1])
        #expect(try q.next()?.id == ids[2])
        let both = try subscribe(
            hub, [("match", "a"), ("last_event_id", ids[0])], headers: [("Last-Event-ID", ids[1])])
        defer { both.close() }
        #expect(both.head.header("Mercure-Last-Event-ID") == ids[1])
        #expect(try both.next()?.id == ids[2])
    }

    @Test("earliest, and an id the hub cannot place, replay the whole history and answer earliest")
    func earliestAndUnknown() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let ids = try publishAll(hub, [("a", false), ("b", false), ("a", false)])
        for id in ["earliest", "urn:uuid:00000000-0000-4000-8000-000000000000", ""] {
            let s = try subscribe(hub, [("match", "a"), ("last_event_id", id)])
            defer { s.close() }
            #expect(s.head.header("Mercure-Last-Event-ID") == "earliest", "\(id)")
            #expect(try s.events(2).map(\.id) == [ids[0], ids[2]])
        }
    }

    @Test("private updates are filtered on replay by the token presented now")
    func privateOnReplay() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let ids = try publishAll(hub, [("a", false), ("a", true), ("a", false)])
        let anonymous = try subscribe(hub, [("match", "a"), ("last_event_id", "earliest")])
        defer { anonymous.close() }
        #expect(try anonymous.events(2).map(\.id) == [ids[0], ids[2]])
        let granted = try subscribe(
            hub, [("match", "a"), ("last_event_id", "earliest")],
            headers: [("Authorization", "Bearer \(token08(subscribe: ["a"]))")])
        defer { granted.close() }
        #expect(try granted.events(3).map(\.id) == ids)
    }

    @Test("history is bounded by historyCount: an evicted id answers earliest")
    func bounded() throws {
        let hub = try mercureHub { $0.historyCount = 2 }
        defer { hub.stop() }
        let ids = try publishAll(hub, [("a", false), ("a", false), ("a", false), ("a", false)])
        let old = try subscribe(hub, [("match", "a")], headers: [("Last-Event-ID", ids[0])])
        defer { old.close() }
        #expect(old.head.header("Mercure-Last-Event-ID") == "earliest")
        #expect(try old.events(2).map(\.id) == [ids[2], ids[3]])
        let kept = try subscribe(hub, [("match", "a")], headers: [("Last-Event-ID", ids[2])])
        defer { kept.close() }
        #expect(kept.head.header("Mercure-Last-Event-ID") == ids[2])
        #expect(try kept.next()?.id == ids[3])
    }

    @Test("history is bounded by historyBytes, topics and ids counted")
    func boundedBytes() throws {
        let hub = try mercureHub { $0.historyBytes = 1_000 }
        defer { hub.stop() }
        let topic = String(repeating: "t", count: 300)
        let token = token08(publish: ["*"])
        let ids = try (0..<4).map { _ in try publish(hub, [("topic", topic), ("data", "x")], token: token).text }
        // Each update costs its frame (~50 bytes), its id (45) and its 300-byte topic: two fit.
        let s = try subscribe(hub, [("match", topic), ("last_event_id", "earliest")])
        defer { s.close() }
        #expect(try s.events(2).map(\.id) == [ids[2], ids[3]])
        let live = try publish(hub, [("topic", topic)], token: token)
        #expect(try s.next()?.id == live.text)
    }
}
