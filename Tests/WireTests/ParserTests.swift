import MicroSSEWire
import Testing

@Suite("EventStreamParser (WHATWG event stream interpretation)")
struct ParserTests {
    // MARK: Line ends

    @Test("LF line breaks")
    func lfLineBreaks() {
        #expect(
            parse("data: a\ndata: b\n\ndata: c\n\n").events == [
                ParsedEvent(data: "a\nb"), ParsedEvent(data: "c"),
            ])
    }

    @Test("CRLF line breaks")
    func crlfLineBreaks() {
        #expect(
            parse("data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n").events == [
                ParsedEvent(data: "a\nb"), ParsedEvent(data: "c"),
            ])
    }

    @Test("CR line breaks")
    func crLineBreaks() {
        #expect(
            parse("data: a\rdata: b\r\rdata: c\r\r").events == [
                ParsedEvent(data: "a\nb"), ParsedEvent(data: "c"),
            ])
    }

    @Test("mixed line breaks")
    func mixedLineBreaks() {
        #expect(parse("data: a\rdata: b\r\ndata: c\n\r\n").events == [ParsedEvent(data: "a\nb\nc")])
        #expect(
            parse("data: a\n\rdata: b\r\n\n").events == [
                ParsedEvent(data: "a"), ParsedEvent(data: "b"),
            ])
    }

    @Test("CR then LF is one line end, CR then CR is two")
    func crThenLF() {
        #expect(parse("data: a\r\n").events.isEmpty)
        #expect(parse("data: a\r\r").events == [ParsedEvent(data: "a")])
        #expect(parse("data: a\n\r").events == [ParsedEvent(data: "a")])
        #expect(parse("data: a\r\n\r").events == [ParsedEvent(data: "a")])
    }

    @Test("CRLF split across feeds is one line end")
    func crlfSplitAcrossFeeds() {
        var parser = EventStreamParser()
        #expect(parser.feed(bytes("data: a\r")).isEmpty)
        // Were the LF a second line end, it would be a blank line and dispatch "a" here.
        #expect(parser.feed(bytes("\n")).isEmpty)
        #expect(parser.feed(bytes("data: b\r")).isEmpty)
        #expect(parser.feed(bytes("\n\r")) == [ParsedEvent(data: "a\nb")])
    }

    @Test("CR at the end of a feed then empty feeds then LF is still one line end")
    func crThenEmptyFeedsThenLF() {
        var parser = EventStreamParser()
        #expect(parser.feed(bytes("data: a\r")).isEmpty)
        #expect(parser.feed([UInt8]()).isEmpty)
        #expect(parser.feed(bytes("\n")).isEmpty)
        #expect(parser.feed(bytes("\n")) == [ParsedEvent(data: "a")])
    }

    @Test("CR at the end of a feed then CR is two line ends")
    func crThenCRAcrossFeeds() {
        var parser = EventStreamParser()
        #expect(parser.feed(bytes("data: a\r")).isEmpty)
        #expect(
            parser.feed(bytes("\rdata: b\n\n")) == [ParsedEvent(data: "a"), ParsedEvent(data: "b")])
    }

    // MARK: Byte order mark and decoding

    @Test("BOM at stream start is stripped")
    func bomStripped() {
        let (events, _) = parse("\u{FEFF}data: a\n\n")
        #expect(exact(events) == exact([ParsedEvent(data: "a")]))
    }

    @Test("BOM split across feeds is stripped")
    func bomSplitAcrossFeeds() {
        var parser = EventStreamParser()
        #expect(parser.feed([0xEF]).isEmpty)
        #expect(parser.feed([0xBB]).isEmpty)
        #expect(parser.feed([0xBF]).isEmpty)
        #expect(exact(parser.feed(bytes("data: a\n\n"))) == exact([ParsedEvent(data: "a")]))
    }

    @Test("BOM is stripped only once")
    func secondBOMNotStripped() {
        // The second BOM is part of the field name, which is then unknown and ignored.
        #expect(parse("\u{FEFF}\u{FEFF}data: a\n\n").events.isEmpty)
    }

    @Test("BOM after the first line is not stripped")
    func bomLaterNotStripped() {
        #expect(parse("data: a\n\u{FEFF}data: b\n\n").events == [ParsedEvent(data: "a")])
        #expect(parse("\n\u{FEFF}data: b\n\n").events.isEmpty)
    }

    @Test("BOM inside a value is kept")
    func bomInValue() {
        let (events, _) = parse("\u{FEFF}data: \u{FEFF}a\n\n")
        #expect(exact(events) == exact([ParsedEvent(data: "\u{FEFF}a")]))
    }

    @Test("invalid UTF-8 in the stream decodes to U+FFFD")
    func invalidUTF8Replaced() {
        let stream = bytes("data: a") + [0xFF] + bytes("b") + [0xE2, 0x82] + bytes("\n\n")
        #expect(exact(parse(stream).events) == exact([ParsedEvent(data: "a\u{FFFD}b\u{FFFD}")]))
    }

    @Test("UTF-8 sequence split across feeds decodes whole")
    func utf8SplitAcrossFeeds() {
        let stream = bytes("data: €😀\n\n")
        for offset in 0...stream.count {
            var parser = EventStreamParser()
            let events = parser.feed(stream[..<offset]) + parser.feed(stream[offset...])
            #expect(exact(events) == exact([ParsedEvent(data: "€😀")]), "split at \(offset)")
        }
    }

    @Test("NUL in data is kept")
    func nulInData() {
        #expect(exact(parse("data: a\u{0}b\n\n").events) == exact([ParsedEvent(data: "a\u{0}b")]))
    }

    // MARK: Fields

    @Test("field value split at the first colon")
    func firstColon() {
        #expect(parse("data: a:b: c\n\n").events == [ParsedEvent(data: "a:b: c")])
        #expect(parse("data::\n\n").events == [ParsedEvent(data: ":")])
    }

    @Test("only one leading space is removed from the value")
    func oneLeadingSpace() {
        #expect(parse("data:a\n\n").events == [ParsedEvent(data: "a")])
        #expect(parse("data: a\n\n").events == [ParsedEvent(data: "a")])
        #expect(parse("data:  a \n\n").events == [ParsedEvent(data: " a ")])
        #expect(parse("data:\ta\n\n").events == [ParsedEvent(data: "\ta")])
    }

    @Test("line without colon is a field with an empty value")
    func fieldWithoutColon() {
        #expect(parse("data\n\n").events == [ParsedEvent(data: "")])
        #expect(parse("data\ndata\n\n").events == [ParsedEvent(data: "\n")])
        #expect(parse("data: a\ndata\n\n").events == [ParsedEvent(data: "a\n")])
    }

    @Test("field names are exact and case sensitive")
    func exactFieldNames() {
        #expect(parse("Data: a\n\n").events.isEmpty)
        #expect(parse("data : a\n\n").events.isEmpty)
        #expect(parse(" data: a\n\n").events.isEmpty)
        #expect(parse("dat: a\n\n").events.isEmpty)
        #expect(parse("datas: a\n\n").events.isEmpty)
        #expect(parse("ID: 1\ndata: a\n\n").events == [ParsedEvent(data: "a")])
        #expect(parse("Event: x\ndata: a\n\n").events == [ParsedEvent(data: "a")])
    }

    @Test("unknown fields are ignored")
    func unknownFields() {
        let (events, parser) = parse("foo: bar\ndata: a\nx\nretryy: 5\nids: 3\n: c\n\n")
        #expect(events == [ParsedEvent(data: "a")])
        #expect(parser.lastEventID == "")
        #expect(parser.retry == nil)
    }

    @Test("several data lines are joined with LF")
    func dataJoined() {
        #expect(parse("data: a\ndata:\ndata: b\n\n").events == [ParsedEvent(data: "a\n\nb")])
    }

    @Test("one trailing LF is stripped from data")
    func trailingLFStripped() {
        #expect(parse("data: a\ndata:\n\n").events == [ParsedEvent(data: "a\n")])
        #expect(parse("data:\ndata:\n\n").events == [ParsedEvent(data: "\n")])
        #expect(parse("data:\n\n").events == [ParsedEvent(data: "")])
    }

    // MARK: Comments

    @Test("comments are recorded with one leading space removed")
    func comments() {
        let (events, parser) = parse(": one\n:two\n:  three\n:\n: a: b\n\n")
        #expect(events.isEmpty)
        #expect(parser.comments == ["one", "two", " three", "", "a: b"])
    }

    @Test("comments inside an event do not affect it")
    func commentInsideEvent() {
        let (events, parser) = parse("data: a\n: hi\ndata: b\n\n")
        #expect(events == [ParsedEvent(data: "a\nb")])
        #expect(parser.comments == ["hi"])
    }

    @Test("a line of only a colon after a BOM is a comment")
    func bomThenComment() {
        #expect(parse("\u{FEFF}:x\n").parser.comments == ["x"])
    }

    // MARK: event

    @Test("event sets the type; without it the type is message")
    func eventType() {
        #expect(
            parse("event: update\ndata: a\n\n").events == [ParsedEvent(type: "update", data: "a")])
        #expect(parse("data: a\n\n").events == [ParsedEvent(type: "message", data: "a")])
    }

    @Test("empty event field gives message")
    func emptyEventType() {
        #expect(parse("event:\ndata: a\n\n").events == [ParsedEvent(type: "message", data: "a")])
        #expect(
            parse("event: x\nevent\ndata: a\n\n").events == [
                ParsedEvent(type: "message", data: "a")
            ])
    }

    @Test("last event field in a block wins")
    func lastEventTypeWins() {
        #expect(
            parse("event: a\nevent: b\ndata: x\n\n").events == [ParsedEvent(type: "b", data: "x")])
    }

    @Test("event type resets after dispatch")
    func eventTypeResets() {
        #expect(
            parse("event: a\ndata: 1\n\ndata: 2\n\n").events == [
                ParsedEvent(type: "a", data: "1"), ParsedEvent(data: "2"),
            ]
        )
    }

    @Test("blank line with empty data does not dispatch and resets the type")
    func emptyDataNoDispatch() {
        #expect(parse("event: x\n\ndata: a\n\n").events == [ParsedEvent(data: "a")])
        #expect(parse("\n\n\n").events.isEmpty)
        #expect(parse("event: x\nid: 1\nretry: 1\n\n").events.isEmpty)
    }

    // MARK: id

    @Test("id sets the last event ID, which persists across events")
    func idPersists() {
        let (events, parser) = parse("id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n")
        #expect(
            events == [
                ParsedEvent(data: "a", lastEventID: "1", id: "1"),
                ParsedEvent(data: "b", lastEventID: "1", id: nil),
                ParsedEvent(data: "c", lastEventID: "2", id: "2"),
            ]
        )
        #expect(parser.lastEventID == "2")
    }

    @Test("id with NUL is ignored")
    func idWithNULIgnored() {
        let (events, parser) = parse("id: 1\ndata: a\n\nid: 2\u{0}3\ndata: b\n\n")
        #expect(
            events == [
                ParsedEvent(data: "a", lastEventID: "1", id: "1"),
                ParsedEvent(data: "b", lastEventID: "1", id: nil),
            ])
        #expect(parser.lastEventID == "1")
    }

    @Test("empty id resets the last event ID")
    func emptyIDResets() {
        let (events, parser) = parse("id: 1\ndata: a\n\nid\ndata: b\n\n")
        #expect(
            events == [
                ParsedEvent(data: "a", lastEventID: "1", id: "1"),
                ParsedEvent(data: "b", lastEventID: "", id: ""),
            ])
        #expect(parser.lastEventID == "")
    }

    @Test("id in a block without data updates the last event ID without dispatching")
    func idWithoutData() {
        let (events, parser) = parse("id: 7\n\ndata: a\n\n")
        #expect(events == [ParsedEvent(data: "a", lastEventID: "7", id: nil)])
        #expect(parser.lastEventID == "7")
    }

    @Test("id keeps spaces after the one removed")
    func idSpaces() {
        #expect(parse("id:  x \ndata: a\n\n").parser.lastEventID == " x ")
    }

    @Test("id after data in the same block still applies to it")
    func idAfterData() {
        #expect(
            parse("data: a\nid: 3\n\n").events == [
                ParsedEvent(data: "a", lastEventID: "3", id: "3")
            ])
    }

    // MARK: retry

    @Test("retry with ASCII digits sets the reconnection time")
    func retryDigits() {
        #expect(parse("retry: 1500\n").parser.retry == 1500)
        #expect(parse("retry:0\n").parser.retry == 0)
        #expect(parse("retry: 007\n").parser.retry == 7)
        #expect(parse("retry: 1\nretry: 2\n").parser.retry == 2)
    }

    @Test(
        "retry with anything but ASCII digits is ignored",
        arguments: [
            "1a", "-1", "+1", " 1", "1 ", "1.5", "", "abc", "١٢", "1\u{0}",
            "99999999999999999999999",
        ]
    )
    func retryNonDigitsIgnored(value: String) {
        let (events, parser) = parse("retry: 10\n\nretry: \(value)\ndata: a\n\n")
        #expect(events == [ParsedEvent(data: "a")])
        #expect(parser.retry == 10)
    }

    @Test("retry without colon is ignored")
    func retryWithoutColon() {
        #expect(parse("retry\n").parser.retry == nil)
    }

    @Test("retry applies even if the block is never finished")
    func retryImmediate() {
        #expect(parse("retry: 5\n").parser.retry == 5)
        #expect(parse("retry: 5").parser.retry == nil)
    }

    // MARK: Dispatch

    @Test("bytes of an unterminated last block are never dispatched")
    func unterminatedBlock() {
        #expect(parse("data: a").events.isEmpty)
        #expect(parse("data: a\n").events.isEmpty)
        #expect(parse("data: a\r").events.isEmpty)
        #expect(parse("data: a\r\n").events.isEmpty)
        #expect(parse("data: a\n\ndata: b\n").events == [ParsedEvent(data: "a")])
    }

    @Test("unterminated block is dispatched once its blank line arrives")
    func laterBlankLine() {
        var parser = EventStreamParser()
        #expect(parser.feed(bytes("data: a\n")).isEmpty)
        #expect(parser.feed(bytes("\n")) == [ParsedEvent(data: "a")])
        #expect(parser.feed(bytes("\n")).isEmpty)
    }

    @Test("several events in one feed are returned in order")
    func severalEvents() {
        let events = parse("data: 1\n\ndata: 2\n\nevent: e\ndata: 3\n\n").events
        #expect(events.map(\.data) == ["1", "2", "3"])
        #expect(events.map(\.type) == ["message", "message", "e"])
    }

    @Test("a fresh parser has empty state")
    func freshState() {
        let parser = EventStreamParser()
        #expect(parser.lastEventID == "")
        #expect(parser.retry == nil)
        #expect(parser.comments.isEmpty)
    }

    @Test("any sequence of bytes can be fed, contiguous or not")
    func nonContiguousInput() {
        var parser = EventStreamParser()
        let lazy = "id: 1\rdata: a\r\r".utf8.lazy.map { $0 }
        #expect(parser.feed(lazy) == [ParsedEvent(data: "a", lastEventID: "1", id: "1")])
        #expect(
            parser.feed(AnySequence(bytes("data: b\n\n"))) == [
                ParsedEvent(data: "b", lastEventID: "1")
            ])
        #expect(parser.feed("data: c\n\n".utf8) == [ParsedEvent(data: "c", lastEventID: "1")])
    }

    @Test("a long line spanning many feeds is kept whole")
    func longLine() {
        var parser = EventStreamParser()
        let payload = String(repeating: "0123456789", count: 1000)
        _ = parser.feed(bytes("data: "))
        for chunk in bytes(payload).chunked(7) { #expect(parser.feed(chunk).isEmpty) }
        #expect(parser.feed(bytes("\n\n")) == [ParsedEvent(data: payload)])
    }

    // BOM, comments, every kind of line end, multi-byte characters, an id with NUL, a tail.
    @Test("hand-written stream parses the same at every byte boundary")
    func handWrittenStreamEveryBoundary() {
        let stream = bytes(
            "\u{FEFF}: hello\r\nretry: 300\rid: é1\ndata: a€\r\ndata:  b\r\r"
                + "event: ü\rdata\n\r\n: bye\r\nid: x\u{0}\ndata: 😀\r\n\r\nid\ndata: z\n\ndata: tail"
        )
        let observed = expectSameAtEveryBoundary(stream)
        let expected = [
            ParsedEvent(data: "a€\n b", lastEventID: "é1", id: "é1"),
            ParsedEvent(type: "ü", data: "", lastEventID: "é1"),
            ParsedEvent(data: "😀", lastEventID: "é1"),
            ParsedEvent(data: "z", lastEventID: "", id: ""),
        ]
        #expect(observed.events == exact(expected))
        #expect(observed.retry == 300)
        #expect(observed.comments == [bytes("hello"), bytes("bye")])
        #expect(observed.lastEventID == [])
    }
}

extension Array {
    /// Consecutive pieces of at most `size` elements.
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
