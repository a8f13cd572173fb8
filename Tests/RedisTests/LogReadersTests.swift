import MicroSSECore
import MicroSSETestSupport
import MicroSSEWire
import Testing

@testable import MicroSSERedis

@Suite("A hub's streams read logs")
struct RedisLogReadersTests {
    /// What `subscriber` has to read now, parsed.
    private func read(_ subscriber: Subscriber, into parser: inout EventStreamParser) -> [String] {
        events(subscriber, into: &parser).map(\.data)
    }

    private func events(_ subscriber: Subscriber, into parser: inout EventStreamParser) -> [ParsedEvent] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case .wrote(let n, _) = buffer.withUnsafeMutableBytes({ subscriber.read(into: $0, onSuspend: {}) }) {
            bytes += buffer[..<n]
        }
        return parser.feed(bytes)
    }

    /// Runs `body` with a started broker on a redis-server of its own, and channels `a` and `b`.
    private func withBroker(
        _ name: String, _ body: (RedisBroker, ChannelName, ChannelName) throws -> Void
    ) throws {
        let redis = try RedisServer()
        let settings = RedisBroker.Settings(
            url: try RedisURL(redis.url), prefix: uniquePrefix(name), historyCount: 100)
        let broker = RedisBroker(settings: settings)
        try broker.start()
        defer { broker.shutdown() }
        try body(broker, try ChannelName("a"), try ChannelName("b"))
    }

    @Test("fresh streams read one log per channel or channel set; a resumed one joins its log after its replay")
    func logs() throws {
        try withBroker("logs") { broker, a, b in
            let singles = (0..<3).map { _ in Subscriber(channels: [a], limit: 1 << 20) }
            let pairs = [Subscriber(channels: [a, b], limit: 1 << 20), Subscriber(channels: [b, a], limit: 1 << 20)]
            for s in singles + pairs { #expect(broker.subscribe(s, after: nil as String?) == .fresh) }
            #expect(broker.logCounts == (1, 1, 0))
            var ids: [String] = []
            for i in 0..<10 { ids.append(try broker.publish(try Event(data: "\(i)"), to: i % 2 == 0 ? a : b)) }
            var parsers = Array(repeating: EventStreamParser(), count: 5)
            var got = Array(repeating: [String](), count: 5)
            let all = singles + pairs
            try #require(
                eventually {
                    for i in all.indices { got[i] += read(all[i], into: &parsers[i]) }
                    return got[3].count == 10 && got[4].count == 10 && got[0].count == 5
                })
            let evens = stride(from: 0, to: 10, by: 2).map(String.init)
            #expect(got[0...2].allSatisfy { $0 == evens })
            #expect(got[3] == (0..<10).map(String.init) && got[4] == got[3], "one log per set, in publish order")

            // A resume from the 4th event: the replay (its channel's events after it), then live
            // events from the log, each once.
            let resumed = Subscriber(channels: [a], limit: 1 << 20)
            #expect(broker.subscribe(resumed, after: ids[3]) == .exact)
            var parser = EventStreamParser()
            var resumedGot = read(resumed, into: &parser)
            for i in 10..<14 { _ = try broker.publish(try Event(data: "\(i)"), to: a) }
            try #require(
                eventually {
                    resumedGot += read(resumed, into: &parser)
                    return resumedGot.count == 7
                })
            #expect(resumedGot == ["4", "6", "8", "10", "11", "12", "13"])
            #expect(broker.logCounts == (1, 1, 0), "past its replay, the resumed stream reads the channel's log")
            for s in all + [resumed] { broker.unsubscribe(s) }
            #expect(broker.logCounts == (0, 0, 0))
        }
    }

    @Test("a two-channel resume, an id no hub gave, a stream gone mid-resume: each event once, no log left")
    func resumes() throws {
        try withBroker("logs2") { broker, a, b in
            // A stream of both channels from the start: once it has the first six events, the hub
            // has delivered them (a stream joining a log later does not get them live).
            let watcher = Subscriber(channels: [a, b], limit: 1 << 20)
            #expect(broker.subscribe(watcher, after: nil as String?) == .fresh)
            var ids: [String] = []
            for i in 0..<6 { ids.append(try broker.publish(try Event(data: "\(i)"), to: i % 2 == 0 ? a : b)) }
            var watcherParser = EventStreamParser()
            var watched: [String] = []
            try #require(
                eventually {
                    watched += read(watcher, into: &watcherParser)
                    return watched.count >= 6
                })
            // Both channels from the 2nd event on: the replay merges them in publish order.
            let pair = Subscriber(channels: [b, a], limit: 1 << 20)
            #expect(broker.subscribe(pair, after: ids[1]) == .exact)
            // An id no hub gave: the gap event, then live events, none lost meanwhile.
            let stranger = Subscriber(channels: [a], limit: 1 << 20)
            #expect(broker.subscribe(stranger, after: "not-an-id") == .gap(.unknown))
            #expect(broker.logCounts.waiting <= 1, "the stranger reads its log at once")
            // Registered, then gone before its replay is queued.
            let leaver = Subscriber(channels: [a, b], limit: 1 << 20)
            guard case .replay = broker.register(leaver, after: ids[0]) else {
                Issue.record("a resume from a known id fetches a replay")
                return
            }
            broker.unsubscribe(leaver)
            _ = broker.finishResume(
                leaver, replay: [], gap: nil, lastEventID: ids[0], after: RedisStreamID(position: ids[0])!)
            for i in 6..<10 { _ = try broker.publish(try Event(data: "\(i)"), to: i % 2 == 0 ? a : b) }
            var pairParser = EventStreamParser()
            var strangerParser = EventStreamParser()
            var pairGot: [String] = []
            var strangerGot: [ParsedEvent] = []
            try #require(
                eventually {
                    pairGot += read(pair, into: &pairParser)
                    strangerGot += events(stranger, into: &strangerParser)
                    return pairGot.count >= 8 && strangerGot.count >= 3
                })
            #expect(pairGot == (2..<10).map(String.init))
            #expect(strangerGot.map(\.type) == ["microsse.gap", "message", "message"])
            #expect(strangerGot.dropFirst().map(\.data) == ["6", "8"])
            #expect(broker.logCounts == (1, 1, 0), "past their replays both read logs; the leaver left nothing")
            for s in [watcher, pair, stranger] { broker.unsubscribe(s) }
            #expect(broker.logCounts == (0, 0, 0))
        }
    }
}
