import MicroSSEWire
import Testing

@Suite("Event validation: a bad id or event name is rejected, never altered")
struct EventTests {
    @Test("an event keeps every field exactly as given")
    func keepsFields() throws {
        let event = try Event(data: " a\r\nb ", event: "update", id: "7", retry: 1500)
        #expect(Array(event.data.utf8) == bytes(" a\r\nb "))
        #expect(event.event == "update")
        #expect(event.id == "7")
        #expect(event.retry == 1500)
    }

    @Test("fields default to unset")
    func defaults() throws {
        let event = try Event(data: "x")
        #expect(event.event == nil)
        #expect(event.id == nil)
        #expect(event.retry == nil)
    }

    @Test(
        "id with CR, LF or NUL throws invalidID",
        arguments: ["a\rb", "a\nb", "a\r\nb", "a\u{0}b", "\r", "\n", "\u{0}", "trailing\n"]
    )
    func idWithLineBreakOrNULThrows(id: String) {
        do {
            _ = try Event(data: "x", id: id)
            Issue.record("no error for \(id.debugDescription)")
        } catch {
            #expect(error.code == .invalidID)
            #expect(!error.message.isEmpty)
            #expect(!error.message.contains("\n"))
        }
        do {
            try Event.validateID(id)
            Issue.record("validateID accepted \(id.debugDescription)")
        } catch {
            #expect(error.code == .invalidID)
        }
    }

    @Test(
        "event name with CR or LF throws invalidEventName",
        arguments: ["a\rb", "a\nb", "a\r\nb", "\n", "x\r"])
    func eventNameWithLineBreakThrows(name: String) {
        do {
            _ = try Event(data: "x", event: name)
            Issue.record("no error for \(name.debugDescription)")
        } catch {
            #expect(error.code == .invalidEventName)
            #expect(!error.message.isEmpty)
        }
        do {
            try Event.validateEventName(name)
            Issue.record("validateEventName accepted \(name.debugDescription)")
        } catch {
            #expect(error.code == .invalidEventName)
        }
    }

    @Test("the static validators accept what the initializer accepts")
    func validatorsAcceptValidValues() throws {
        for value in ["", "1", "a b:c", " leading", "ünïcødé 😀", "\t"] {
            try Event.validateID(value)
            try Event.validateEventName(value)
            _ = try Event(data: "x", event: value, id: value)
        }
        // NUL is refused in ids (a browser ignores such an id) and in event names (a publish that
        // asks for one is refused with 400, never sent as `event: a\0b`).
        #expect(throws: MicroSSEError.self) { try Event.validateEventName("a\u{0}b") }
        do {
            try Event.validateID("a\u{0}b")
            Issue.record("validateID accepted NUL")
        } catch {
            #expect(error.code == .invalidID)
        }
    }

    @Test("negative retry throws invalidArgument", arguments: [-1, -1000, Int.min])
    func negativeRetryThrows(retry: Int) {
        do {
            _ = try Event(data: "x", retry: retry)
            Issue.record("no error for retry \(retry)")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test("zero and large retry are valid")
    func nonNegativeRetry() throws {
        #expect(try Event(data: "x", retry: 0).retry == 0)
        #expect(try Event(data: "x", retry: Int.max).retry == Int.max)
    }

    @Test(
        "invalid UTF-8 bytes throw invalidUTF8",
        arguments: [
            [0xFF],  // never valid
            [0x61, 0xC3],  // truncated two-byte sequence
            [0xC0, 0xAF],  // overlong "/"
            [0xED, 0xA0, 0x80],  // UTF-16 surrogate
            [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
            [0x80],  // lone continuation byte
            [0x64, 0x61, 0x74, 0x61, 0xE2, 0x82],  // "data" + truncated "€"
        ] as [[UInt8]]
    )
    func invalidUTF8Throws(data: [UInt8]) {
        do {
            _ = try Event(utf8Data: data)
            Issue.record("no error for \(data)")
        } catch {
            #expect(error.code == .invalidUTF8)
        }
    }

    @Test("valid UTF-8 bytes give the same event as the text")
    func validUTF8() throws {
        let text = "héllo\r\nwörld 😀\u{0}"
        let fromBytes = try Event(utf8Data: Array(text.utf8), event: "e", id: "1", retry: 5)
        #expect(fromBytes == (try Event(data: text, event: "e", id: "1", retry: 5)))
        #expect(try Event(utf8Data: [UInt8]()).data == "")
        #expect(try Event(utf8Data: text.utf8).data == text)
        #expect(try Event(utf8Data: Array(text.utf8)[...]).data == text)
    }

    @Test("bytes init still validates id, event and retry")
    func bytesInitValidatesFields() {
        #expect(throws: MicroSSEError.self) { try Event(utf8Data: [0x61], id: "\n") }
        #expect(throws: MicroSSEError.self) { try Event(utf8Data: [0x61], event: "\r") }
        #expect(throws: MicroSSEError.self) { try Event(utf8Data: [0x61], retry: -1) }
    }

    @Test("withID returns a copy with the new id and every other field kept")
    func withIDKeepsFields() throws {
        let event = try Event(data: "d", event: "e", id: "1", retry: 3)
        let stamped = try event.withID("2")
        #expect(stamped.id == "2")
        #expect(stamped.data == "d")
        #expect(stamped.event == "e")
        #expect(stamped.retry == 3)
        #expect(event.id == "1")
        #expect(try Event(data: "d").withID("9").id == "9")
    }

    @Test("withID rejects CR, LF and NUL", arguments: ["\r", "\n", "\u{0}", "1\r\n2"])
    func withIDValidates(id: String) throws {
        let event = try Event(data: "d")
        do {
            _ = try event.withID(id)
            Issue.record("withID accepted \(id.debugDescription)")
        } catch {
            #expect(error.code == .invalidID)
        }
    }
}
