// Shared helpers for the Swift fuzz targets. Each target is compiled together with the project
// source files it exercises (see Fuzz/run.sh), so `internal` declarations are visible.

/// Stops the fuzzer with a message: libFuzzer reports the trap as a crash and saves the input.
func fuzzFail(_ message: @autoclosure () -> String) -> Never {
    fatalError("FUZZ PROPERTY VIOLATED: \(message())")
}

/// Byte-exact string comparison (Swift's `==` uses canonical equivalence, which would hide a
/// changed normalization).
func sameBytes(_ a: String?, _ b: String?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case (let x?, let y?): return x.utf8.elementsEqual(y.utf8)
    default: return false
    }
}

/// Byte-exact comparison of parsed events.
func sameEvents(_ a: [ParsedEvent], _ b: [ParsedEvent]) -> Bool {
    guard a.count == b.count else { return false }
    for (x, y) in zip(a, b) {
        guard sameBytes(x.type, y.type), sameBytes(x.data, y.data), sameBytes(x.lastEventID, y.lastEventID),
            sameBytes(x.id, y.id)
        else { return false }
    }
    return true
}

/// Splits fuzz input into fields at 0xFF, a byte that never occurs in UTF-8 text.
func fields(_ bytes: UnsafeRawBufferPointer, count: Int) -> [[UInt8]] {
    var parts = bytes.split(separator: 0xFF, maxSplits: count - 1, omittingEmptySubsequences: false).map {
        Array($0)
    }
    while parts.count < count { parts.append([]) }
    return parts
}

/// Payload line breaks as a client sees them: CRLF and lone CR become LF.
func normalizeLineBreaks(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    let b = Array(s.utf8)
    var i = 0
    while i < b.count {
        if b[i] == 0x0D {
            out.append(0x0A)
            if i + 1 < b.count && b[i + 1] == 0x0A { i += 1 }
        } else {
            out.append(b[i])
        }
        i += 1
    }
    return out
}

/// Checks that an accepted event encodes to bytes the strict parser reads back as exactly the
/// event (whole, and split at `split`), and that the encoding cannot end early or forge fields.
func checkRoundTrip(_ event: Event, split: Int) {
    let encoded = EventEncoder.encode(event)
    var parser = EventStreamParser()
    let parsed = parser.feed(encoded)
    guard parsed.count == 1 else { fuzzFail("\(parsed.count) events parsed back from one: \(event)") }
    let p = parsed[0]
    let expectedType = (event.event ?? "").isEmpty ? "message" : event.event!
    guard sameBytes(p.type, expectedType) else { fuzzFail("type \(p.type) != \(expectedType)") }
    guard p.data.utf8.elementsEqual(normalizeLineBreaks(event.data)) else {
        fuzzFail("data changed: \(Array(event.data.utf8)) -> \(Array(p.data.utf8))")
    }
    guard sameBytes(p.id, event.id) else {
        fuzzFail("id \(String(describing: p.id)) != \(String(describing: event.id))")
    }
    guard sameBytes(p.lastEventID, event.id ?? "") else { fuzzFail("lastEventID changed") }
    guard parser.retry == event.retry else { fuzzFail("retry \(String(describing: parser.retry))") }
    // The block is complete: nothing is left half-parsed.
    guard parser.feed(Array("data: x\n\n".utf8)).count == 1 else { fuzzFail("encoder left an open line") }
    // The same bytes in two pieces.
    let cut = encoded.isEmpty ? 0 : split % (encoded.count + 1)
    var two = EventStreamParser()
    let halves = two.feed(encoded[..<cut]) + two.feed(encoded[cut...])
    guard sameEvents(halves, parsed) else { fuzzFail("split at \(cut) parsed differently") }
}
