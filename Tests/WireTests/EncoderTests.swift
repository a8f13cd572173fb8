import MicroSSEWire
import Testing

@Suite("EventEncoder: the wire format")
struct EncoderTests {
    @Test("fields are written id, event, retry, then data, then a blank line")
    func fieldOrder() throws {
        let event = try Event(data: "payload", event: "update", id: "42", retry: 3000)
        #expect(
            EventEncoder.encode(event)
                == bytes("id: 42\nevent: update\nretry: 3000\ndata: payload\n\n"))
    }

    @Test("id, event and retry are written only when set")
    func onlySetFields() throws {
        #expect(EventEncoder.encode(try Event(data: "x")) == bytes("data: x\n\n"))
        #expect(EventEncoder.encode(try Event(data: "x", id: "1")) == bytes("id: 1\ndata: x\n\n"))
        #expect(
            EventEncoder.encode(try Event(data: "x", event: "e")) == bytes("event: e\ndata: x\n\n"))
        #expect(
            EventEncoder.encode(try Event(data: "x", retry: 0)) == bytes("retry: 0\ndata: x\n\n"))
    }

    @Test("data: is written with one space")
    func dataWithOneSpace() throws {
        #expect(EventEncoder.encode(try Event(data: "a")) == bytes("data: a\n\n"))
    }

    @Test("leading space in payload survives")
    func leadingSpaceSurvives() throws {
        let event = try Event(data: "  two spaces\n one")
        #expect(EventEncoder.encode(event) == bytes("data:   two spaces\ndata:  one\n\n"))
        #expect(
            exact(parse(EventEncoder.encode(event)).events)
                == exact([ParsedEvent(data: "  two spaces\n one")]))
    }

    @Test("empty payload is one data: line and gives one event with empty data")
    func emptyPayload() throws {
        let encoded = EventEncoder.encode(try Event(data: ""))
        #expect(encoded == bytes("data:\n\n"))
        #expect(parse(encoded).events == [ParsedEvent(data: "")])
    }

    @Test("payload split on LF")
    func splitOnLF() throws {
        #expect(EventEncoder.encode(try Event(data: "a\nb")) == bytes("data: a\ndata: b\n\n"))
    }

    @Test("payload split on CRLF")
    func splitOnCRLF() throws {
        #expect(EventEncoder.encode(try Event(data: "a\r\nb")) == bytes("data: a\ndata: b\n\n"))
    }

    @Test("payload split on lone CR")
    func splitOnCR() throws {
        #expect(EventEncoder.encode(try Event(data: "a\rb")) == bytes("data: a\ndata: b\n\n"))
    }

    @Test("payload with mixed and repeated line breaks keeps every empty line")
    func mixedLineBreaks() throws {
        let event = try Event(data: "a\r\n\rb\n\r\nc\r\r\nd\n")
        let expected = "data: a\ndata:\ndata: b\ndata:\ndata: c\ndata:\ndata: d\ndata:\n\n"
        #expect(EventEncoder.encode(event) == bytes(expected))
        #expect(
            parse(EventEncoder.encode(event)).events == [ParsedEvent(data: "a\n\nb\n\nc\n\nd\n")])
    }

    @Test("payload that is only line breaks")
    func onlyLineBreaks() throws {
        #expect(EventEncoder.encode(try Event(data: "\n")) == bytes("data:\ndata:\n\n"))
        #expect(EventEncoder.encode(try Event(data: "\r\n")) == bytes("data:\ndata:\n\n"))
        #expect(EventEncoder.encode(try Event(data: "\n\r")) == bytes("data:\ndata:\ndata:\n\n"))
        #expect(
            parse(EventEncoder.encode(try Event(data: "\r"))).events == [ParsedEvent(data: "\n")])
    }

    @Test(
        "payload cannot forge a field or end the event early",
        arguments: [
            "a\n\nid: x\nevent: y",
            "a\r\rid: x\revent: y",
            "a\r\n\r\nid: x\r\nevent: y\r\nretry: 1\r\n\r\ndata: z",
            "\n\n",
            "\r\r\r",
            "data: inner\n\nevent: evil\ndata: second\n",
            ": comment\nid\nretry:5",
        ]
    )
    func noForgedFields(data: String) throws {
        let stream = EventEncoder.encode(try Event(data: data))
        let (events, parser) = parse(stream)
        #expect(exact(events) == exact([ParsedEvent(data: normalizedLineBreaks(data))]))
        #expect(parser.lastEventID == "")
        #expect(parser.retry == nil)
        #expect(parser.comments.isEmpty)
    }

    @Test("empty id is written as id: and resets the last event ID")
    func emptyID() throws {
        let encoded = EventEncoder.encode(try Event(data: "x", id: ""))
        #expect(encoded == bytes("id:\ndata: x\n\n"))
        var parser = EventStreamParser()
        _ = parser.feed(EventEncoder.encode(try Event(data: "a", id: "5")))
        #expect(parser.lastEventID == "5")
        #expect(parser.feed(encoded) == [ParsedEvent(data: "x", lastEventID: "", id: "")])
        #expect(parser.lastEventID == "")
    }

    @Test("empty event name writes no event: line (it means message)")
    func emptyEventName() throws {
        #expect(EventEncoder.encode(try Event(data: "x", event: "")) == bytes("data: x\n\n"))
    }

    @Test("id and event values keep their leading spaces")
    func fieldLeadingSpaces() throws {
        let event = try Event(data: "x", event: " e", id: " 1")
        #expect(EventEncoder.encode(event) == bytes("id:  1\nevent:  e\ndata: x\n\n"))
        #expect(
            parse(EventEncoder.encode(event)).events == [
                ParsedEvent(type: " e", data: "x", lastEventID: " 1", id: " 1")
            ])
    }

    @Test("encode(into:) appends to the buffer and matches encode")
    func encodeInto() throws {
        let first = try Event(data: "one\ntwo", event: "e", id: "1")
        let second = try Event(data: "", retry: 10)
        var buffer = bytes(": prefix\n\n")
        EventEncoder.encode(first, into: &buffer)
        EventEncoder.encode(second, into: &buffer)
        #expect(
            buffer == bytes(": prefix\n\n") + EventEncoder.encode(first)
                + EventEncoder.encode(second))
    }

    @Test("encode(into:) many times keeps every byte")
    func encodeIntoMany() throws {
        var buffer: [UInt8] = []
        let event = try Event(data: "line\nline", id: "x")
        for _ in 0..<1000 { EventEncoder.encode(event, into: &buffer) }
        #expect(buffer.count == 1000 * EventEncoder.encode(event).count)
        #expect(parse(buffer).events.count == 1000)
    }

    @Test("output is UTF-8")
    func utf8Output() throws {
        let event = try Event(data: "é😀\u{0}", event: "ünï", id: "ид")
        #expect(EventEncoder.encode(event) == bytes("id: ид\nevent: ünï\ndata: é😀\u{0}\n\n"))
    }

    @Test("comment is : text then a blank line")
    func comment() {
        #expect(EventEncoder.comment("keep-alive") == bytes(": keep-alive\n\n"))
    }

    @Test("empty comment is :\\n\\n")
    func emptyComment() {
        #expect(EventEncoder.comment("") == bytes(":\n\n"))
    }

    @Test("multi-line comment is split like data")
    func multiLineComment() {
        #expect(EventEncoder.comment("a\r\nb\rc\nd") == bytes(": a\n: b\n: c\n: d\n\n"))
        #expect(EventEncoder.comment("a\n\ndata: x") == bytes(": a\n:\n: data: x\n\n"))
    }

    @Test("comment never dispatches and is recorded line by line")
    func commentParses() {
        let (events, parser) = parse(EventEncoder.comment(" lead\n\ndata: x\r\nid: 9"))
        #expect(events.isEmpty)
        #expect(parser.comments == [" lead", "", "data: x", "id: 9"])
        #expect(parser.lastEventID == "")
    }

    @Test("standalone retry block")
    func retryBlock() {
        #expect(EventEncoder.retry(milliseconds: 2500) == bytes("retry: 2500\n\n"))
        #expect(EventEncoder.retry(milliseconds: 0) == bytes("retry: 0\n\n"))
        let (events, parser) = parse(EventEncoder.retry(milliseconds: 2500))
        #expect(events.isEmpty)
        #expect(parser.retry == 2500)
    }

    @Test("largest retry round-trips")
    func largestRetry() throws {
        #expect(parse(EventEncoder.retry(milliseconds: Int.max)).parser.retry == Int.max)
        #expect(
            parse(EventEncoder.encode(try Event(data: "", retry: Int.max))).parser.retry == Int.max)
    }

    @Test("line breaks are found at every offset around the eight-byte scan: CR, LF, CRLF, LF CR")
    func lineBreaksAtEveryOffset() throws {
        // The payload split the plain way, byte by byte, as the reference.
        func expected(_ text: [UInt8]) -> [UInt8] {
            var out: [UInt8] = []
            var line: [UInt8] = []
            var i = 0
            func flush() {
                out += Array("data:".utf8) + (line.isEmpty ? [] : [0x20] + line) + [0x0A]
                line = []
            }
            while i < text.count {
                if text[i] == 0x0A || text[i] == 0x0D {
                    if text[i] == 0x0D, i + 1 < text.count, text[i + 1] == 0x0A { i += 1 }
                    flush()
                } else {
                    line.append(text[i])
                }
                i += 1
            }
            flush()
            return out + [0x0A]
        }
        for length in 0..<40 {
            for position in 0..<max(length, 1) {
                for breakBytes in [[0x0A], [0x0D], [0x0D, 0x0A], [0x0A, 0x0D]] as [[UInt8]] {
                    var text = [UInt8](repeating: UInt8(ascii: "x"), count: length)
                    if length > 0 {
                        text.replaceSubrange(position..<min(position + breakBytes.count, length), with: breakBytes)
                    }
                    let event = try Event(data: String(decoding: text, as: UTF8.self))
                    #expect(EventEncoder.encode(event) == expected(text), "length \(length), break at \(position)")
                }
            }
        }
    }
}
