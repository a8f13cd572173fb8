// Fuzz target: `Last-Event-ID` handling. The input drives a MemoryBroker (fake clock, tiny
// history limits) through publishes to three channels (server-assigned and caller-given ids,
// duplicates, numeric-looking ones) and subscribes with a `Last-Event-ID` that is a real id, a
// number, or noise. For every subscribe, the queued prelude is parsed and checked against a
// model of everything published:
//   - a gap event, if any, comes first and only once;
//   - replayed events are from the subscribed channels, in publish order, without duplicates;
//   - when the id names one known position, nothing at or before it is replayed (the client
//     already had it), and without a gap event every later event is replayed (nothing lost
//     silently);
//   - an id that names no position is never silent: it gets a gap event.
// It also checks the header lookup the router uses to find `Last-Event-ID` (ASCII
// case-insensitive, first match) against an oracle.
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

final class FakeClock: Sendable {
    let value = Atomic<UInt64>(1_000_000)
    func advance(_ n: UInt64) { value.add(n, ordering: .relaxed) }
    func read() -> UInt64 { value.load(ordering: .relaxed) }
}

struct Published {
    let index: Int
    let seq: UInt64
    let channel: ChannelName
    /// What the publisher got back: its label, or the position.
    let id: String
    /// The position's id (what a stream of several channels sees).
    let position: String
    let labelled: Bool
}

struct Input {
    let bytes: UnsafeRawBufferPointer
    var at = 0
    mutating func next() -> Int? {
        guard at < bytes.count else { return nil }
        defer { at += 1 }
        return Int(bytes[at])
    }
}

let channelNames: [ChannelName] = [try! ChannelName("a"), try! ChannelName("b"), try! ChannelName("c")]
let tolerateNumericIDs = getenv("FUZZ_TOLERATE_NUMERIC_IDS") != nil

func asciiLower(_ s: String) -> [UInt8] {
    s.utf8.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }
}

func checkHeaderLookup(_ input: inout Input) {
    var headers: [(name: String, value: String)] = []
    let names = [
        "Last-Event-ID", "last-event-id", "LAST-EVENT-ID", "Last-Event-Id ", "Last_Event_ID", "Last-Event-İD",
        "Last-Event-ıd", "X", "Last-Event-I\u{0}",
    ]
    for _ in 0..<((input.next() ?? 0) % 5) {
        let n = names[(input.next() ?? 0) % names.count]
        headers.append((n, String(input.next() ?? 0)))
    }
    let request = Request(method: "GET", path: "/events/a", headers: headers)
    let want = asciiLower("Last-Event-ID")
    let expected = headers.first { asciiLower($0.name) == want }?.value
    guard sameBytes(request.header("Last-Event-ID"), expected) else {
        fuzzFail("header lookup: \(headers) gave \(String(describing: request.header("Last-Event-ID")))")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzResume(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    var input = Input(bytes: UnsafeRawBufferPointer(start: data, count: size))
    guard let a = input.next(), let b = input.next() else { return 0 }
    checkHeaderLookup(&input)
    let clock = FakeClock()
    let broker = MemoryBroker(
        limits: .init(historyCount: 1 + a % 8, historyBytes: 48 + b * 4), now: { clock.read() })
    var published: [Published] = []
    var lastSeq: UInt64 = 0
    while let op = input.next() {
        switch op % 4 {
        case 0:
            clock.advance(UInt64(input.next() ?? 1) * 3)
        case 1:
            let channel = channelNames[(op >> 2) % 3]
            let choice = input.next() ?? 0
            var id: String?
            switch choice % 6 {
            case 0, 1: id = nil
            case 2: id = "e\(choice >> 3)"
            case 3: id = published.isEmpty ? "x" : published[(choice >> 3) % published.count].id
            case 4: id = String(lastSeq &+ UInt64(choice >> 3) &- 8)  // collides with the sequence
            default: id = String(choice >> 3)
            }
            let event = try! Event(data: "p\(published.count)", id: id)
            guard let assigned = try? broker.publish(event, to: channel) else {
                // The hub's own ids are refused as labels, and only they.
                guard id?.hasPrefix("~") == true else { fuzzFail("publish of \(String(describing: id)) refused") }
                continue
            }
            guard id?.hasPrefix("~") != true else { fuzzFail("the hub's id \(id!) was taken as a label") }
            let seq = lastSeq + 1
            lastSeq = seq
            let position = HubID.encode(HubPosition(epoch: broker.epoch, major: seq))
            guard id == nil ? assigned == position : assigned == id else {
                fuzzFail("publish returned \(assigned), expected \(id ?? position)")
            }
            published.append(
                Published(
                    index: published.count, seq: seq, channel: channel, id: assigned, position: position,
                    labelled: id != nil))
        case 2:
            let mask = ((op >> 2) % 7) + 1
            let channels = channelNames.enumerated().filter { mask & (1 << $0.offset) != 0 }.map(\.element)
            let choice = input.next() ?? 0
            var lastEventID: String
            switch choice % 5 {
            case 0: lastEventID = published.isEmpty ? "1" : published[(choice >> 3) % published.count].id
            case 1: lastEventID = published.isEmpty ? "1" : published[(choice >> 3) % published.count].position
            case 2: lastEventID = String(lastSeq &+ UInt64(choice >> 3) &- 16)
            case 3: lastEventID = "e\(choice >> 3)"
            default: lastEventID = String(choice >> 3)
            }
            checkSubscribe(broker, channels: channels, lastEventID: lastEventID, published: published, lastSeq: lastSeq)
        default:
            // A fresh subscriber gets nothing from history.
            let sub = Subscriber(channels: channelNames, limit: 1 << 20)
            guard broker.subscribe(sub, after: nil) == .fresh, drain(sub).isEmpty else {
                fuzzFail("fresh subscribe replayed history")
            }
            broker.unsubscribe(sub)
        }
    }
    return 0
}

func drain(_ sub: Subscriber) -> [ParsedEvent] {
    var bytes: [UInt8] = []
    while true {
        let action = sub.read(max: 1 << 20, write: { bytes += $0 }, onSuspend: {})
        if case .wrote = action { continue }
        break
    }
    var parser = EventStreamParser()
    return parser.feed(bytes)
}

func checkSubscribe(
    _ broker: MemoryBroker, channels: [ChannelName], lastEventID: String, published: [Published], lastSeq: UInt64
) {
    let sub = Subscriber(channels: channels, limit: 1 << 24)
    let status = broker.subscribe(sub, after: lastEventID)
    let events = drain(sub)
    broker.unsubscribe(sub)
    let context =
        "channels \(channels) lastEventID \(lastEventID) published \(published.map { "\($0.channel):\($0.id)@\($0.seq)" })"

    var replay = events[...]
    let gap = replay.first?.type == ControlEvents.gapName
    if gap { replay = replay.dropFirst() }
    if replay.contains(where: { $0.type == ControlEvents.gapName }) { fuzzFail("gap event not first: \(context)") }
    switch status {
    case .gap: guard gap else { fuzzFail("gap status without gap event: \(context)") }
    case .exact, .fresh: guard !gap else { fuzzFail("gap event without gap status: \(context)") }
    }
    // Which publishes were replayed (data is "pN").
    var indices: [Int] = []
    for e in replay {
        guard e.data.hasPrefix("p"), let i = Int(e.data.dropFirst()), i < published.count else {
            fuzzFail("unknown event replayed: \(e.data) \(context)")
        }
        guard channels.contains(published[i].channel) else { fuzzFail("event from another channel: \(context)") }
        // A stream of one channel sees labels, a stream of several positions.
        let want = channels.count > 1 ? published[i].position : published[i].id
        guard sameBytes(e.id, want) else { fuzzFail("replayed with another id: \(context)") }
        indices.append(i)
    }
    guard zip(indices, indices.dropFirst()).allSatisfy({ $0 < $1 }) else {
        fuzzFail("replay out of order or duplicated: \(indices) \(context)")
    }
    // The position the id names, when it names exactly one: a position of the hub, else a label
    // at its newest use in each subscribed channel (two channels at two places: ambiguous).
    var position: UInt64?
    if let p = published.first(where: { $0.position == lastEventID }) {
        position = p.seq
    } else {
        var newest: [ChannelName: UInt64] = [:]
        for p in published where p.labelled && p.id == lastEventID && channels.contains(p.channel) {
            newest[p.channel] = p.seq
        }
        let places = Set(newest.values)
        if places.count == 1 {
            position = places.first
        } else {
            guard gap else { fuzzFail("an id naming no one position was silent: \(context)") }
        }
    }
    guard let position else { return }
    for i in indices where published[i].seq <= position {
        fuzzFail("replayed p\(i) (seq \(published[i].seq)) the client already had (position \(position)): \(context)")
    }
    if !gap {
        let expected = published.filter { channels.contains($0.channel) && $0.seq > position }.map(\.index)
        guard expected == indices else {
            fuzzFail("silent loss: expected \(expected), replayed \(indices): \(context)")
        }
    }
}
