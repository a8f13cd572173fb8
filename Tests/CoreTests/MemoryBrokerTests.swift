import MicroSSECore
import MicroSSEWire
import Testing

@Suite("Memory broker: ids, history, resume")
struct MemoryBrokerTests {
    let clock = FakeClock(1_700_000_000_000_000)

    func subscriber(_ channels: [ChannelName], limit: Int = 1 << 20) -> Subscriber {
        Subscriber(channels: channels, limit: limit)
    }

    @Test("server-assigned ids are positions in one sequence across channels, under the broker's epoch")
    func idsIncreaseAcrossChannels() throws {
        let broker = MemoryBroker.make(clock: clock)
        let a = try broker.publish("1", to: "a")
        let b = try broker.publish("2", to: "b")
        clock.advance(1_000)
        let c = try broker.publish("3", to: "a")
        #expect(a == "~1.0.\(broker.epoch).1")
        #expect(HubID.decode(b) == [HubPosition(epoch: broker.epoch, major: 2)])
        #expect(HubID.decode(c) == [HubPosition(epoch: broker.epoch, major: 3)])
        #expect(MemoryBroker.make(clock: clock).epoch != broker.epoch, "another broker, another epoch")
    }

    @Test("ids keep increasing when the clock stands still or goes back")
    func idsIncreaseWhenClockStalls() throws {
        let clock = FakeClock(5_000)
        let broker = MemoryBroker.make(clock: clock)
        var last: UInt64 = 0
        for _ in 0..<100 {
            let id = try #require(HubID.decode(try broker.publish("x", to: "a"))?.first?.major)
            #expect(id > last)
            last = id
        }
    }

    @Test("the frame of a published event carries its id, and its data line by line")
    func frameCarriesID() throws {
        let broker = MemoryBroker.make(clock: clock)
        let sub = subscriber(["a"])
        #expect(broker.subscribe(sub, after: nil) == .fresh)
        let id = try broker.publish("x\ny", to: "a", event: "greeting")
        let given = try broker.publish("z", to: "a", id: "mine")
        #expect(given == "mine")
        #expect(
            sub.receivedEvents() == [
                ParsedEvent(type: "greeting", data: "x\ny", lastEventID: id, id: id),
                ParsedEvent(data: "z", lastEventID: "mine", id: "mine"),
            ])
    }

    @Test("a subscriber without Last-Event-ID gets live events only")
    func freshGetsLiveOnly() throws {
        let broker = MemoryBroker.make(clock: clock)
        try broker.publish("old", to: "a")
        let sub = subscriber(["a"])
        #expect(broker.subscribe(sub, after: nil) == .fresh)
        try broker.publish("new", to: "a")
        #expect(sub.receivedEvents().map(\.data) == ["new"])
    }

    @Test("resume from the middle of history replays exactly what follows, then live events")
    func resumeExact() throws {
        let broker = MemoryBroker.make(clock: clock)
        let ids = try (0..<10).map { try broker.publish("e\($0)", to: "a") }
        let sub = subscriber(["a"])
        #expect(broker.subscribe(sub, after: ids[4]) == .exact)
        try broker.publish("e10", to: "a")
        #expect(sub.receivedEvents().map(\.data) == (5...10).map { "e\($0)" })
    }

    @Test("resume from the newest id replays nothing and signals no gap")
    func resumeFromNewest() throws {
        let broker = MemoryBroker.make(clock: clock)
        let id = try broker.publish("e", to: "a")
        let sub = subscriber(["a"])
        #expect(broker.subscribe(sub, after: id) == .exact)
        #expect(sub.receivedEvents().isEmpty)
    }

    @Test("resume from an evicted id: gap event first, then all retained, nothing the client had")
    func resumeEvicted() throws {
        let broker = MemoryBroker.make(count: 3, clock: clock)
        let ids = try (0..<6).map { try broker.publish("e\($0)", to: "a") }
        let sub = subscriber(["a"])
        #expect(broker.subscribe(sub, after: ids[1]) == .gap(.evicted))
        let events = sub.receivedEvents()
        #expect(events.first?.type == "microsse.gap")
        #expect(events.first?.data == #"{"lastEventId":"\#(ids[1])","reason":"evicted"}"#)
        #expect(events.first?.id == nil)
        #expect(events.dropFirst().map(\.data) == ["e3", "e4", "e5"])
    }

    @Test("resume from the last evicted id itself is exact: the client had it")
    func resumeAtFloor() throws {
        let broker = MemoryBroker.make(count: 3, clock: clock)
        let ids = try (0..<6).map { try broker.publish("e\($0)", to: "a") }
        let sub = subscriber(["a"])
        #expect(broker.subscribe(sub, after: ids[2]) == .exact)
        #expect(sub.receivedEvents().map(\.data) == ["e3", "e4", "e5"])
    }

    @Test("an id this broker cannot place gets an unknown gap and no replay")
    func resumeUnknown() throws {
        let broker = MemoryBroker.make(clock: clock)
        let last = try broker.publish("e0", to: "a")
        let beyond = HubID.encode(HubPosition(epoch: broker.epoch, major: 1_000))
        #expect(HubID.decode(last) != nil)
        for id in ["not-an-id", beyond, "99999999999999999999999", "17", "~1.0.\(broker.epoch).1.1.x.2", "~2.0.a.1"] {
            let sub = subscriber(["a"])
            #expect(broker.subscribe(sub, after: id) == .gap(.unknown))
            try broker.publish("live", to: "a")
            let events = sub.receivedEvents()
            try #require(events.map(\.type) == ["microsse.gap", "message"])
            #expect(events[0].data == "{\"lastEventId\":\(JSON.quote(id)),\"reason\":\"unknown\"}")
            #expect(events[1].data == "live")
            broker.unsubscribe(sub)
        }
    }

    @Test("an id from before a restart gets an evicted gap, then what the new broker holds")
    func resumeAcrossRestart() throws {
        let before = MemoryBroker.make(clock: clock)
        let old = try (0..<3).map { try before.publish("old\($0)", to: "a") }
        clock.advance(2_000_000)
        let after = MemoryBroker.make(clock: clock)
        try after.publish("new0", to: "a")
        // A channel the new broker has never seen: the id still predates its boot.
        let sub = subscriber(["a", "quiet"])
        #expect(after.subscribe(sub, after: old[1]) == .gap(.evicted))
        #expect(sub.receivedEvents().map(\.data).dropFirst() == ["new0"])
        let quiet = subscriber(["quiet"])
        #expect(after.subscribe(quiet, after: old[2]) == .gap(.evicted))
    }

    @Test("a caller-given id resumes exactly while retained, and is still placed once evicted")
    func resumeCallerGivenID() throws {
        let broker = MemoryBroker.make(count: 2, clock: clock)
        try broker.publish("a", to: "c", id: "order-1")
        try broker.publish("b", to: "c", id: "order-2")
        let s1 = subscriber(["c"])
        #expect(broker.subscribe(s1, after: "order-1") == .exact)
        #expect(s1.receivedEvents().map(\.data) == ["b"])
        try broker.publish("c", to: "c", id: "order-3")
        // order-1 itself was evicted, but everything after it is retained: still exact.
        let s2 = subscriber(["c"])
        #expect(broker.subscribe(s2, after: "order-1") == .exact)
        #expect(s2.receivedEvents().map(\.data) == ["b", "c"])
        try broker.publish("d", to: "c", id: "order-4")
        // Now "b" is gone too: the client missed it, and the stream says so.
        let s3 = subscriber(["c"])
        #expect(broker.subscribe(s3, after: "order-1") == .gap(.evicted))
        let events = s3.receivedEvents()
        #expect(events.map(\.type) == ["microsse.gap", "message", "message"])
        #expect(events.dropFirst().map(\.data) == ["c", "d"])
        // An id never given at all stays unknown.
        #expect(broker.subscribe(subscriber(["c"]), after: "order-99") == .gap(.unknown))
    }

    @Test("one stream over several channels gets events in publish order, live and replayed")
    func multiChannelOrder() throws {
        let broker = MemoryBroker.make(clock: clock)
        let live = subscriber(["a", "b"])
        _ = broker.subscribe(live, after: nil)
        var ids: [String] = []
        for i in 0..<20 { ids.append(try broker.publish("\(i)", to: i % 3 == 0 ? "a" : "b")) }
        try broker.publish("other", to: "c")
        #expect(live.receivedEvents().map(\.data) == (0..<20).map(String.init))
        let resumed = subscriber(["b", "a"])
        #expect(broker.subscribe(resumed, after: ids[9]) == .exact)
        #expect(resumed.receivedEvents().map(\.data) == (10..<20).map(String.init))
    }

    @Test("a multi-channel resume reports a gap when any one channel evicted past the id")
    func multiChannelGap() throws {
        let broker = MemoryBroker.make(count: 2, clock: clock)
        let first = try broker.publish("a0", to: "a")
        for i in 0..<3 { try broker.publish("b\(i)", to: "b") }  // b evicts b0, which came after a0
        let sub = subscriber(["a", "b"])
        #expect(broker.subscribe(sub, after: first) == .gap(.evicted))
        #expect(sub.receivedEvents().map(\.data).dropFirst() == ["b1", "b2"])
        // Only channel a: nothing of a was evicted.
        let onlyA = subscriber(["a"])
        #expect(broker.subscribe(onlyA, after: first) == .exact)
    }

    @Test("history is bounded by count")
    func historyCount() throws {
        let broker = MemoryBroker.make(count: 5, clock: clock)
        let first = try broker.publish("e0", to: "a")
        for i in 1..<200 { try broker.publish("e\(i)", to: "a") }
        let sub = subscriber(["a"])
        #expect(broker.subscribe(sub, after: first) == .gap(.evicted))
        #expect(sub.receivedEvents().dropFirst().map(\.data) == (195..<200).map { "e\($0)" })
    }

    @Test("history is bounded by encoded bytes")
    func historyBytes() throws {
        // Each frame is "id: <16 digits>\ndata: <96 x>\n\n" = 21 + 103 = 124 bytes.
        let broker = MemoryBroker.make(count: 1_000, bytes: 1_000, clock: clock)
        let first = try broker.publish(String(repeating: "x", count: 96), to: "a")
        for _ in 0..<20 { try broker.publish(String(repeating: "x", count: 96), to: "a") }
        let sub = subscriber(["a"])
        #expect(broker.subscribe(sub, after: first) == .gap(.evicted))
        #expect(sub.receivedEvents().count == 1 + 1_000 / 124)
    }

    // Regression: a replay larger than the subscriber's byte bound failed the stream on
    // arrival, and every reconnect with the same id failed the same way. Then it was cut to its
    // newest events; now it is read through a cursor as the stream drains, and comes whole.
    @Test("a replay larger than the client buffer is read as the stream drains: all of it, exact, the stream lives")
    func replayBoundedByClientBuffer() throws {
        let broker = MemoryBroker.make(count: 1_000, bytes: 1 << 20, clock: clock)
        let first = try broker.publish("start", to: "a")
        for i in 0..<100 { try broker.publish("\(i):" + String(repeating: "x", count: 100), to: "a") }
        let sub = subscriber(["a"], limit: 2_000)
        #expect(broker.subscribe(sub, after: first) == .exact)
        #expect(sub.pendingBytes == 0, "nothing of the replay is queued before the stream reads")
        #expect(!sub.wasDropped && sub.isOpen)
        let events = sub.receivedEvents()
        #expect(events.map { Int($0.data.prefix { $0 != ":" })! } == Array(0..<100))
        try broker.publish("live", to: "a")
        #expect(sub.receivedEvents().map(\.data) == ["live"])
    }

    @Test("a replay read through its cursor queues a chunk at a time; live events wait behind it")
    func replayThroughCursor() throws {
        let broker = MemoryBroker.make(count: 10_000, bytes: 64 << 20, clock: clock)
        let first = try broker.publish("start", to: "a")
        for i in 0..<5_000 { try broker.publish("\(i)", to: i % 2 == 0 ? "a" : "b") }
        let sub = subscriber(["a", "b"], limit: 8 << 20)
        #expect(broker.subscribe(sub, after: first) == .exact)
        try broker.publish("live", to: "b")
        var parser = EventStreamParser()
        var got: [String] = []
        var most = 0
        while true {
            var bytes: [UInt8] = []
            guard case .wrote = sub.read(max: 4_096, write: { bytes += $0 }, onSuspend: {}) else { break }
            most = max(most, sub.pendingBytes)
            got += parser.feed(bytes).map(\.data)
        }
        #expect(got == (0..<5_000).map(String.init) + ["live"], "in publish order, live after the replay")
        #expect(most <= 64 << 10, "at most about a chunk of replay pending: \(most) bytes")
    }

    @Test("events evicted while a replay is read: a gap event where they were, then what is retained")
    func evictionDuringReplay() throws {
        let broker = MemoryBroker.make(count: 1_000, bytes: 1 << 20, clock: clock)
        let first = try broker.publish("start", to: "a")
        for i in 0..<1_000 { try broker.publish("\(i)", to: "a") }
        let sub = subscriber(["a"], limit: 8 << 20)
        #expect(broker.subscribe(sub, after: first) == .exact, "start itself was evicted, nothing after it")
        var parser = EventStreamParser()
        var bytes: [UInt8] = []
        _ = sub.read(max: 4_096, write: { bytes += $0 }, onSuspend: {})
        let before = parser.feed(bytes).filter { $0.type == "message" }.map { Int($0.data)! }
        // 600 more events evict 600 of the 1,000 retained, most of them not yet replayed.
        for i in 1_000..<1_600 { try broker.publish("\(i)", to: "a") }
        var rest: [ParsedEvent] = []
        while true {
            var more: [UInt8] = []
            guard case .wrote = sub.read(max: 4_096, write: { more += $0 }, onSuspend: {}) else { break }
            rest += parser.feed(more)
        }
        let gaps = rest.indices.filter { rest[$0].type == "microsse.gap" }
        #expect(gaps.count == 1, "one gap event mid-stream")
        let afterGap = rest[(gaps.first ?? 0)...].filter { $0.type == "message" }.map { Int($0.data)! }
        let beforeGap = before + rest[..<(gaps.first ?? 0)].filter { $0.type == "message" }.map { Int($0.data)! }
        #expect(beforeGap == Array(0..<beforeGap.count) && beforeGap.count < 600)
        #expect(afterGap == Array(600..<1_600), "what is retained, then live, no duplicate")
        #expect(!sub.wasDropped)
    }

    @Test("after unsubscribe nothing more is queued; a channel without events is forgotten")
    func unsubscribe() throws {
        let broker = MemoryBroker.make(clock: clock)
        let sub = subscriber(["a", "b"])
        _ = broker.subscribe(sub, after: nil)
        try broker.publish("x", to: "a")
        #expect(broker.channelCount == 2)
        broker.unsubscribe(sub)
        try broker.publish("y", to: "a")
        #expect(sub.receivedEvents().map(\.data) == ["x"])
        #expect(broker.channelCount == 1)
    }

    @Test("after shutdown publish throws unavailable and subscribe registers nothing")
    func shutdown() throws {
        let broker = MemoryBroker.make(clock: clock)
        broker.shutdown()
        #expect(throws: MicroSSEError(.unavailable, "the server is shutting down")) {
            try broker.publish("x", to: "a")
        }
        let sub = subscriber(["a"])
        #expect(broker.subscribe(sub, after: "1") == .fresh)
        #expect(broker.channelCount == 0)
    }

    @Test("publish rejects a bad channel name with a one-line reason")
    func badChannel() {
        let broker = MemoryBroker.make(clock: clock)
        for name in ["", "a/b", "sp ace", String(repeating: "x", count: 129)] {
            #expect(throws: MicroSSEError.self) { try broker.publish("x", to: name) }
        }
        #expect(broker.channelCount == 0)
    }

    @Test("a slow subscriber is failed over its bound without affecting another")
    func slowSubscriberIsolated() throws {
        let broker = MemoryBroker.make(clock: clock)
        let slow = subscriber(["a"], limit: 1_000)
        let fast = subscriber(["a"], limit: 1 << 20)
        _ = broker.subscribe(slow, after: nil)
        _ = broker.subscribe(fast, after: nil)
        var got: [String] = []
        for i in 0..<100 {
            try broker.publish("\(i)" + String(repeating: ".", count: 50), to: "a")
            got += fast.receivedEvents().map { String($0.data.prefix { $0 != "." }) }
        }
        #expect(slow.wasDropped && !slow.isOpen)
        #expect(got == (0..<100).map(String.init))
    }

    @Test("streams of the same channels, in any order, read one log: publish order across them, one append each")
    func sharedSetLog() throws {
        let broker = MemoryBroker.make(clock: clock)
        let ab = subscriber(["a", "b"])
        let ba = subscriber(["b", "a"])
        let ac = subscriber(["a", "c"])
        for s in [ab, ba, ac] { _ = broker.subscribe(s, after: nil) }
        #expect(broker.setLogCount == 2)
        for i in 0..<30 { try broker.publish("\(i)", to: ["a", "b", "c"][i % 3]) }
        let inAB = (0..<30).filter { $0 % 3 != 2 }.map(String.init)
        #expect(ab.receivedEvents().map(\.data) == inAB)
        #expect(ba.receivedEvents().map(\.data) == inAB)
        #expect(ac.receivedEvents().map(\.data) == (0..<30).filter { $0 % 3 != 1 }.map(String.init))
        // A private frame keeps its place among the set's events.
        ab.enqueue(Frame(bytes: Array("data: mine\n\n".utf8), isEvent: true))
        try broker.publish("after", to: "b")
        #expect(ab.receivedEvents().map(\.data) == ["mine", "after"])
        broker.unsubscribe(ab)
        #expect(broker.setLogCount == 2)
        broker.unsubscribe(ba)
        #expect(broker.setLogCount == 1)
        try broker.publish("late", to: "b")
        #expect(ba.receivedEvents().map(\.data) == ["after"], "nothing is appended once the set's log is gone")
        broker.unsubscribe(ac)
        #expect(broker.setLogCount == 0)
    }

    @Test("a slow stream of several channels is failed over its bound; one of the same channels reads on")
    func slowSetReader() throws {
        let broker = MemoryBroker.make(count: 1, clock: clock)
        let slow = subscriber(["a", "b"], limit: 1_000)
        let fast = subscriber(["a", "b"], limit: 1 << 20)
        _ = broker.subscribe(slow, after: nil)
        _ = broker.subscribe(fast, after: nil)
        var got: [String] = []
        for i in 0..<100 {
            try broker.publish("\(i)" + String(repeating: ".", count: 50), to: i % 2 == 0 ? "a" : "b")
            got += fast.receivedEvents().map { String($0.data.prefix { $0 != "." }) }
        }
        #expect(slow.wasDropped && !slow.isOpen)
        #expect(got == (0..<100).map(String.init))
    }
}
