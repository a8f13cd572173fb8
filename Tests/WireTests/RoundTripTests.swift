import MicroSSEWire
import Testing

/// Sample events covering every field and every kind of payload line.
private func sampleEvents() throws -> [Event] {
    [
        try Event(data: "plain"),
        try Event(data: ""),
        try Event(data: " leading space"),
        try Event(data: "trailing space "),
        try Event(data: "a\n\nid: x\nevent: y"),
        try Event(data: "a\r\nb\rc\nd"),
        try Event(data: "\r\n\r\n"),
        try Event(data: "\n"),
        try Event(data: "ends with CR\r"),
        try Event(data: ":not a comment\n: nor this"),
        try Event(data: "data: nested\ndata:"),
        try Event(data: "ünïcødé 😀 e\u{301} 中文", event: "ünï", id: "ид-1"),
        try Event(data: "NUL \u{0} inside"),
        try Event(data: "\u{FEFF}BOM first"),
        try Event(data: "x", event: "update", id: "42", retry: 1000),
        try Event(data: "x", event: "", id: ""),
        try Event(data: "x", event: " spaced ", id: " 7 "),
        try Event(data: "x", event: "message"),
        try Event(data: "x", event: "with: colon", id: "id: colon"),
        try Event(data: "retry only", retry: 0),
    ]
}

@Suite("Round trip: encoder output through the strict parser")
struct RoundTripTests {
    @Test("every encoded event parses back to exactly that event")
    func eachEventRoundTrips() throws {
        for event in try sampleEvents() {
            let (events, parser) = parse(EventEncoder.encode(event))
            #expect(exact(events) == exact([expectedParse(of: event)]), "\(event)")
            #expect(parser.retry == event.retry, "\(event)")
            #expect(parser.comments.isEmpty)
        }
    }

    @Test("a stream of several events parses the same split at every byte boundary")
    func streamEveryBoundary() throws {
        var stream: [UInt8] = EventEncoder.retry(milliseconds: 2000)
        stream += EventEncoder.comment("hello\r\nworld")
        var expected: [ParsedEvent] = []
        var lastEventID = ""
        for event in try sampleEvents() {
            EventEncoder.encode(event, into: &stream)
            stream += EventEncoder.comment("")
            let parsed = expectedParse(of: event, lastEventID: lastEventID)
            lastEventID = parsed.lastEventID
            expected.append(parsed)
        }
        let observed = expectSameAtEveryBoundary(stream)
        #expect(observed.events == exact(expected))
        #expect(observed.retry == 0)
        #expect(observed.lastEventID == bytes(lastEventID))
        let heartbeats = [[UInt8]](repeating: [], count: expected.count)
        #expect(observed.comments == [bytes("hello"), bytes("world")] + heartbeats)
    }

    @Test("comments round-trip line by line")
    func commentsRoundTrip() {
        for text in ["", "x", " x", "a\nb", "a\r\n\r\nb\r", ": nested", "ü😀"] {
            let (events, parser) = parse(EventEncoder.comment(text))
            #expect(events.isEmpty)
            let lines = normalizedLineBreaks(text).split(
                separator: "\n", omittingEmptySubsequences: false)
            #expect(
                parser.comments.map { Array($0.utf8) } == lines.map { Array($0.utf8) },
                "\(text.debugDescription)")
        }
    }

    @Test("pseudo-random payloads round-trip, whole and split anywhere")
    func pseudoRandomRoundTrip() throws {
        let pieces = [
            "\r", "\n", "\r\n", "\n\r", " ", "  ", ":", ": ", "a", "Z", "0", "data", "data: ",
            "id: 1", "event: x", "retry: 5", "é", "e\u{301}", "😀", "中", "\u{FEFF}", "\u{0}", "\t",
            "",
        ]
        let namePieces = ["a", "B", " ", ":", "é", "😀", "-", "message", "\t"]
        var random = LCG(seed: 0x5EED_CAFE)
        var stream: [UInt8] = []
        var expected: [ParsedEvent] = []
        var lastEventID = ""
        var lastRetry: Int?
        for round in 0..<500 {
            var data = ""
            for _ in 0..<random.below(12) { data += random.pick(pieces) }
            var name: String?
            if random.below(3) == 0 {
                name = ""
                for _ in 0..<random.below(4) { name! += random.pick(namePieces) }
            }
            var id: String?
            if random.below(2) == 0 {
                id = String(round)
                if random.below(4) == 0 { id! += random.pick([" ", ":", "é", "😀", ""]) }
            }
            let retry = random.below(5) == 0 ? random.below(100_000) : nil
            let event = try Event(data: data, event: name, id: id, retry: retry)

            let encoded = EventEncoder.encode(event)
            let (alone, parser) = parse(encoded)
            #expect(exact(alone) == exact([expectedParse(of: event)]), "round \(round): \(event)")
            #expect(parser.retry == retry, "round \(round)")

            // The same bytes split at a random offset.
            let offset = random.below(encoded.count + 1)
            var split = EventStreamParser()
            let halves = split.feed(encoded[..<offset]) + split.feed(encoded[offset...])
            #expect(exact(halves) == exact(alone), "round \(round), split at \(offset)")

            stream += encoded
            let parsed = expectedParse(of: event, lastEventID: lastEventID)
            lastEventID = parsed.lastEventID
            lastRetry = retry ?? lastRetry
            expected.append(parsed)
        }
        // All events as one stream, fed in random-sized pieces.
        var parser = EventStreamParser()
        var events: [ParsedEvent] = []
        var start = 0
        while start < stream.count {
            let end = Swift.min(stream.count, start + 1 + random.below(64))
            events += parser.feed(stream[start..<end])
            start = end
        }
        #expect(exact(events) == exact(expected))
        #expect(parser.lastEventID == lastEventID)
        #expect(parser.retry == lastRetry)
    }
}
