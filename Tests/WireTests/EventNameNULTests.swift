import MicroSSEWire
import Testing

@Suite("Event names refuse NUL")
struct EventNameNULTests {
    @Test("an event name with NUL throws invalidEventName, from the initializer and the validator")
    func nulInNameThrows() {
        for name in ["\u{0}", "a\u{0}b", "message\u{0}"] {
            #expect(throws: MicroSSEError.self) { try Event(data: "x", event: name) }
            do {
                try Event.validateEventName(name)
                Issue.record("validateEventName accepted \(name.debugDescription)")
            } catch {
                #expect(error.code == .invalidEventName)
                #expect(error.message == "event name must not contain NUL")
            }
        }
    }
}
