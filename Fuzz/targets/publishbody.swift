// Fuzz target: publish bodies and the publish query's `event=`/`id=` values, as the hub's
// `POST /events/{channel}` hands them to `Event(utf8Data:event:id:)`. Valid UTF-8 (checked here
// by an independent decoder: no overlong forms, no surrogates, nothing above U+10FFFF) must be
// accepted byte for byte and round-trip through encoder and parser; anything else must be
// refused with `.invalidUTF8`, never repaired. Input: body | event | id (0xFF-separated, but
// the body is the whole input when the first byte is even, so 0xFF reaches the validator too).

/// Strict UTF-8 validation (RFC 3629), written independently of the standard library.
func isValidUTF8(_ b: [UInt8]) -> Bool {
    var i = 0
    while i < b.count {
        let c = b[i]
        var need = 0
        var min: UInt32 = 0
        var scalar: UInt32 = 0
        switch c {
        case 0x00...0x7F:
            i += 1
            continue
        case 0xC2...0xDF: need = 1; min = 0x80; scalar = UInt32(c & 0x1F)
        case 0xE0...0xEF: need = 2; min = 0x800; scalar = UInt32(c & 0x0F)
        case 0xF0...0xF4: need = 3; min = 0x10000; scalar = UInt32(c & 0x07)
        default: return false
        }
        guard i + need < b.count else { return false }
        for k in 1...need {
            let d = b[i + k]
            guard d & 0xC0 == 0x80 else { return false }
            scalar = scalar << 6 | UInt32(d & 0x3F)
        }
        if scalar < min || scalar > 0x10FFFF || (0xD800...0xDFFF).contains(scalar) { return false }
        i += need + 1
    }
    return true
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPublishBody(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard let mode = input.first else { return 0 }
    let rest = UnsafeRawBufferPointer(rebasing: input[1...])
    let body: [UInt8]
    var name: String?
    var id: String?
    if mode & 1 == 0 {
        body = Array(rest)
    } else {
        let f = fields(rest, count: 3)
        body = f[0]
        if mode & 2 != 0 { name = String(decoding: f[1], as: UTF8.self) }
        if mode & 4 != 0 { id = String(decoding: f[2], as: UTF8.self) }
    }
    let valid = isValidUTF8(body)
    let badName = name.map { $0.utf8.contains(0x0D) || $0.utf8.contains(0x0A) } ?? false
    let badID = id.map { $0.utf8.contains(0x0D) || $0.utf8.contains(0x0A) || $0.utf8.contains(0) } ?? false
    do {
        let event = try Event(utf8Data: body, event: name, id: id)
        guard valid else { fuzzFail("invalid UTF-8 accepted: \(body)") }
        guard !badName, !badID else { fuzzFail("invalid event/id accepted") }
        guard event.data.utf8.elementsEqual(body) else { fuzzFail("body bytes changed: \(body)") }
        checkRoundTrip(event, split: Int(mode))
    } catch {
        if !valid {
            guard error.code == .invalidUTF8 else { fuzzFail("invalid UTF-8 refused with \(error.code)") }
        } else if badName {
            guard error.code == .invalidEventName else { fuzzFail("bad event name refused with \(error.code)") }
        } else if badID {
            guard error.code == .invalidID else { fuzzFail("bad id refused with \(error.code)") }
        } else {
            fuzzFail("valid publish refused: \(error)")
        }
    }
    return 0
}
