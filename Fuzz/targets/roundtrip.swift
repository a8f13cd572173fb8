// Fuzz target: whatever `Event` accepts must parse back to exactly itself (CR/CRLF in data
// come back as LF), whole and split in two. Input fields, separated by 0xFF:
// flags | data | event | id | retry digits | split offset (first two bytes).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRoundTrip(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let f = fields(input, count: 6)
    let flags = f[0].first ?? 0
    let payload = String(decoding: f[1], as: UTF8.self)
    let name = flags & 1 != 0 ? String(decoding: f[2], as: UTF8.self) : nil
    let id = flags & 2 != 0 ? String(decoding: f[3], as: UTF8.self) : nil
    var retry: Int? = nil
    if flags & 4 != 0 {
        var r = 0
        for b in f[4].prefix(8) { r = r &<< 8 | Int(b) }
        r &= Int.max
        retry = flags & 16 != 0 ? Int.min : flags & 8 != 0 ? -1 - (r & 0xFFFF) : r
    }
    let split = f[5].prefix(2).reduce(0) { $0 << 8 | Int($1) }

    let expectFailure =
        (name.map { $0.utf8.contains(0x0D) || $0.utf8.contains(0x0A) } ?? false)
        || (id.map { $0.utf8.contains(0x0D) || $0.utf8.contains(0x0A) || $0.utf8.contains(0) } ?? false)
        || (retry.map { $0 < 0 } ?? false)
    do {
        let event = try Event(data: payload, event: name, id: id, retry: retry)
        if expectFailure { fuzzFail("Event accepted an invalid field: \(event)") }
        checkRoundTrip(event, split: split)
        // withID validates like the initializer.
        if let other = id {
            let e2 = try event.withID(other)
            checkRoundTrip(e2, split: split)
        }
    } catch {
        if !expectFailure { fuzzFail("Event rejected valid fields (\(error)): \(payload.debugDescription)") }
    }
    return 0
}
