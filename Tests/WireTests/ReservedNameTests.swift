import Testing

@testable import MicroSSEWire

@Suite("Event names a publisher may not use")
struct ReservedNameTests {
    @Test("MicroSSE's own names and EventSource's error and open are reserved; message is not")
    func reserved() {
        for name in ["microsse.gap", "microsse.expired", "error", "open"] {
            #expect(ControlEvents.isReserved(name), "\(name)")
            #expect(ControlEvents.reservedReason(name)?.hasPrefix("event name \(name) is reserved") == true)
        }
        for name in ["message", "", "Error", "OPEN", "errors", "microsse.doctor", "update"] {
            #expect(!ControlEvents.isReserved(name), "\(name)")
        }
    }

    @Test("an Event named error can still be built (a server may send it to one client); publishing refuses it")
    func eventStillValid() throws {
        #expect(try Event(data: "x", event: "error").event == "error")
    }
}
