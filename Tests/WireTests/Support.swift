import MicroSSEWire
import Testing

/// Bytes of a string, for readable expectations.
func bytes(_ text: String) -> [UInt8] {
    Array(text.utf8)
}

/// Parses a whole stream in one feed.
func parse(_ stream: [UInt8]) -> (events: [ParsedEvent], parser: EventStreamParser) {
    var parser = EventStreamParser()
    let events = parser.feed(stream)
    return (events, parser)
}

/// Parses a whole stream, given as text, in one feed.
func parse(_ stream: String) -> (events: [ParsedEvent], parser: EventStreamParser) {
    parse(bytes(stream))
}

/// What a client sees of a payload: every CRLF and lone CR becomes LF (SSE cannot carry CR).
func normalizedLineBreaks(_ text: String) -> String {
    var out: [UInt8] = []
    let input = Array(text.utf8)
    var index = 0
    while index < input.count {
        let byte = input[index]
        if byte == 0x0D {
            out.append(0x0A)
            if index + 1 < input.count, input[index + 1] == 0x0A { index += 1 }
        } else {
            out.append(byte)
        }
        index += 1
    }
    return String(decoding: out, as: UTF8.self)
}

/// The event a browser dispatches for `event` written alone on a stream whose last event ID was
/// `lastEventID`.
func expectedParse(of event: Event, lastEventID: String = "") -> ParsedEvent {
    let type = event.event.flatMap { $0.isEmpty ? nil : $0 } ?? "message"
    return ParsedEvent(
        type: type,
        data: normalizedLineBreaks(event.data),
        lastEventID: event.id ?? lastEventID,
        id: event.id
    )
}

/// A parsed event compared byte for byte (`String ==` equates canonically equivalent text).
struct ExactEvent: Equatable, CustomStringConvertible {
    let type: [UInt8]
    let data: [UInt8]
    let lastEventID: [UInt8]
    let id: [UInt8]?

    init(_ event: ParsedEvent) {
        type = Array(event.type.utf8)
        data = Array(event.data.utf8)
        lastEventID = Array(event.lastEventID.utf8)
        id = event.id.map { Array($0.utf8) }
    }

    var description: String {
        func show(_ bytes: [UInt8]) -> String {
            String(decoding: bytes, as: UTF8.self).debugDescription
        }
        return "(type: \(show(type)), data: \(show(data)), lastEventID: \(show(lastEventID)), "
            + "id: \(id.map(show) ?? "nil"))"
    }
}

/// Parsed events, compared byte for byte.
func exact(_ events: [ParsedEvent]) -> [ExactEvent] {
    events.map(ExactEvent.init)
}

/// Everything a parser observed: the dispatched events (byte for byte) and its final state.
struct Observation: Equatable {
    var events: [ExactEvent]
    var lastEventID: [UInt8]
    var retry: Int?
    var comments: [[UInt8]]

    init(events: [ParsedEvent], parser: EventStreamParser) {
        self.events = exact(events)
        lastEventID = Array(parser.lastEventID.utf8)
        retry = parser.retry
        comments = parser.comments.map { Array($0.utf8) }
    }
}

/// Feeds the pieces, in order, to a fresh parser.
func observe(_ pieces: [ArraySlice<UInt8>]) -> Observation {
    var parser = EventStreamParser()
    var events: [ParsedEvent] = []
    for piece in pieces {
        events += parser.feed(piece)
    }
    return Observation(events: events, parser: parser)
}

/// Checks that `stream` parses the same in one feed, split in two at every offset, and fed byte
/// by byte; returns what the one-feed parse observed.
@discardableResult
func expectSameAtEveryBoundary(
    _ stream: [UInt8],
    sourceLocation: SourceLocation = #_sourceLocation
) -> Observation {
    let whole = observe([stream[...]])
    for offset in 0...stream.count {
        let split = observe([stream[..<offset], stream[offset...]])
        if split != whole {
            Issue.record(
                "split at byte \(offset) parses differently", sourceLocation: sourceLocation)
            break
        }
    }
    let byteByByte = observe(stream.indices.map { stream[$0...$0] })
    #expect(
        byteByByte == whole, "byte-by-byte feed parses differently", sourceLocation: sourceLocation)
    return whole
}

/// A seeded linear congruential generator (Knuth's MMIX constants), the same on every platform.
struct LCG {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 33
    }

    mutating func below(_ bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }

    mutating func pick<T>(_ choices: [T]) -> T {
        choices[below(choices.count)]
    }
}
