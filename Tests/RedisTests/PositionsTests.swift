import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Testing

/// The events of a resume of `path` from `lastEventID` that arrive at once, and its gap header.
private func resume(_ hub: Server, _ path: String, from lastEventID: String, count: Int) throws -> (
    gap: String?, events: [ParsedEvent]
) {
    let stream = try EventStreamClient(port: hub.port, path: path, headers: [("Last-Event-ID", lastEventID)])
    return (stream.head.header("MicroSSE-Gap"), try stream.events(count))
}

extension SeveralHubsTests {
    @Suite("Positions and labels with Redis")
    struct Positions {
        @Test("A 1–5, B 1–5, A 6–7: resuming A from label 3 gets A4, A5, A6, A7, on either hub")
        func labelsPlacedPerChannel() throws {
            let redis = try RedisServer()
            let prefix = uniquePrefix("labels")
            let one = try makeHub(redis, prefix: prefix)
            defer { one.stop() }
            let two = try makeHub(redis, prefix: prefix)
            defer { two.stop() }
            for i in 1...5 { #expect(try one.publish(Event(data: "A\(i)", id: String(i)), to: "a") == String(i)) }
            for i in 1...5 { try one.publish(Event(data: "B\(i)", id: String(i)), to: "b") }
            for i in 6...7 { try one.publish(Event(data: "A\(i)", id: String(i)), to: "a") }
            for hub in [one, two] {
                let got = try resume(hub, "/events/a", from: "3", count: 4)
                #expect(got.gap == nil)
                #expect(got.events.map(\.data) == ["A4", "A5", "A6", "A7"])
                #expect(got.events.map(\.id) == ["4", "5", "6", "7"], "labels verbatim on a stream of one channel")
            }
            // A label of b only, or of no channel: unknown.
            let onlyB = try EventStreamClient(port: two.port, path: "/events/c?lastEventId=3")
            #expect(onlyB.head.header("MicroSSE-Gap") == "unknown")
        }

        @Test("a stream of several channels sees positions and resumes exactly from them; a label in both is unknown")
        func compositeIDs() throws {
            let redis = try RedisServer()
            let hub = try makeHub(redis, prefix: uniquePrefix("composite"))
            defer { hub.stop() }
            let live = try EventStreamClient(port: hub.port, path: "/events?channel=a&channel=b")
            try #require(eventually { hub.statistics.clients == 1 })
            for i in 1...6 { try hub.publish(Event(data: "e\(i)", id: "L\(i)"), to: i % 2 == 0 ? "a" : "b") }
            let seen = try live.events(6)
            #expect(seen.map(\.data) == (1...6).map { "e\($0)" })
            #expect(seen.allSatisfy { $0.id?.hasPrefix("~1.0.") == true }, "positions: \(seen.map(\.id))")
            let resumed = try resume(hub, "/events?channel=b&channel=a", from: seen[2].id!, count: 3)
            #expect(resumed.gap == nil)
            #expect(resumed.events.map(\.data) == ["e4", "e5", "e6"])
            #expect(resumed.events.map(\.id) == Array(seen.map(\.id)[3...]))
            let byLabel = try resume(hub, "/events?channel=a&channel=b", from: "L3", count: 3)
            #expect(byLabel.gap == nil)
            #expect(byLabel.events.map(\.data) == ["e4", "e5", "e6"])
            try hub.publish(Event(data: "x", id: "both"), to: "a")
            try hub.publish(Event(data: "y", id: "both"), to: "b")
            let ambiguous = try EventStreamClient(
                port: hub.port, path: "/events?channel=a&channel=b", headers: [("Last-Event-ID", "both")])
            #expect(ambiguous.head.header("MicroSSE-Gap") == "unknown")
        }

        @Test("after Redis lost its data set, an id from before is detected (evicted), never misplaced")
        func epochAfterFlush() throws {
            let redis = try RedisServer()
            let prefix = uniquePrefix("epoch")
            let hub = try makeHub(redis, prefix: prefix)
            defer { hub.stop() }
            let old = try (0..<3).map { try hub.publish("old\($0)", to: "c") }
            #expect(ask(redis.port, ["FLUSHALL"])?.text == "OK")
            let new = try (0..<2).map { try hub.publish("new\($0)", to: "c") }
            #expect(Set(new.map { $0.split(separator: ".")[2] }) != Set(old.map { $0.split(separator: ".")[2] }))
            let got = try resume(hub, "/events/c", from: old[1], count: 3)
            #expect(got.gap == "evicted")
            #expect(got.events.map(\.type) == ["microsse.gap", "message", "message"])
            #expect(got.events.dropFirst().map(\.data) == ["new0", "new1"])
            // A position this data set never issued: unknown.
            let beyond = "~1.0.\(new[0].split(separator: ".")[2]).zzzzzzzz-0"
            let never = try EventStreamClient(port: hub.port, path: "/events/c", headers: [("Last-Event-ID", beyond)])
            #expect(never.head.header("MicroSSE-Gap") == "unknown")
        }

        @Test("an id in the hub's own form is refused as a label")
        func reservedLabel() throws {
            let redis = try RedisServer()
            let hub = try makeHub(redis, prefix: uniquePrefix("reserved"))
            defer { hub.stop() }
            let r = try postEvent(port: hub.port, channel: "c", data: "x", query: "id=~1.0.abc.1-0")
            #expect(r.status == 400 && r.text.contains("reserved"), "\(r.status) \(r.text)")
        }
    }
}
