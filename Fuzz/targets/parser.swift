// Fuzz target: the strict parser on arbitrary bytes. It must not crash, and feeding the bytes
// in two pieces (at an offset taken from the input) or byte by byte must give the same events,
// last event ID, retry and comments as feeding them at once.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzParser(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard size >= 1 else { return 0 }
    let cut = Int(input[0]) * size / 256
    let bytes = Array(input[1...])

    var whole = EventStreamParser()
    let a = whole.feed(bytes)

    var two = EventStreamParser()
    let c = min(cut, bytes.count)
    let b = two.feed(bytes[..<c]) + two.feed(bytes[c...])
    guard sameEvents(a, b) else { fuzzFail("split at \(c) changed events: \(a) vs \(b)") }
    guard sameBytes(whole.lastEventID, two.lastEventID), whole.retry == two.retry else {
        fuzzFail("split at \(c) changed lastEventID/retry")
    }
    guard whole.comments.count == two.comments.count,
        zip(whole.comments, two.comments).allSatisfy({ sameBytes($0, $1) })
    else { fuzzFail("split at \(c) changed comments") }

    if bytes.count <= 512 {
        var single = EventStreamParser()
        var e: [ParsedEvent] = []
        for byte in bytes { e += single.feed(CollectionOfOne(byte)) }
        guard sameEvents(a, e) else { fuzzFail("byte-by-byte feed changed events") }
        guard sameBytes(whole.lastEventID, single.lastEventID), whole.retry == single.retry else {
            fuzzFail("byte-by-byte feed changed lastEventID/retry")
        }
    }
    // Every dispatched event is well-formed: a type, never an id with NUL.
    for event in a {
        if event.type.isEmpty { fuzzFail("empty event type dispatched") }
        if let id = event.id, id.utf8.contains(0) { fuzzFail("id with NUL reported") }
    }
    // Re-encoding what was parsed (as events the server would accept) parses back the same.
    for event in a {
        let ok: Void? = (try? Event(data: event.data, event: event.type, id: event.id)).map {
            checkRoundTrip($0, split: cut)
        }
        if ok == nil, event.id.map({ !$0.utf8.contains(0x0D) && !$0.utf8.contains(0x0A) }) ?? true,
            !event.type.utf8.contains(0x0D), !event.type.utf8.contains(0x0A)
        {
            fuzzFail("a parsed event could not be re-created as an Event")
        }
    }
    return 0
}
