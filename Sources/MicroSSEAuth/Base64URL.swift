/// Strict base64 decoding: the JWT segments (base64url, no padding) and PEM bodies (base64,
/// padded). Anything a lenient decoder would skip or tolerate is refused, so that one token has
/// exactly one spelling.
enum Base64 {
    /// The value of a base64url (`url: true`) or base64 digit, or nil.
    @inline(__always)
    static func digit(_ c: UInt8, url: Bool) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return c - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "-") where url, UInt8(ascii: "+") where !url: return 62
        case UInt8(ascii: "_") where url, UInt8(ascii: "/") where !url: return 63
        default: return nil
        }
    }

    /// Decodes unpadded base64url; nil on any character outside the alphabet, an impossible
    /// length, or non-zero unused bits in the last digit.
    static func decodeURL<C: Collection<UInt8>>(_ text: C) -> [UInt8]? {
        decode(text, url: true)
    }

    /// Decodes padded standard base64 (`=` only at the end, total length a multiple of 4).
    static func decodeStandard(_ text: [UInt8]) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        var body = text[...]
        var pad = 0
        while pad < 2, body.last == UInt8(ascii: "=") {
            body = body.dropLast()
            pad += 1
        }
        return decode(body, url: false)
    }

    private static func decode<C: Collection<UInt8>>(_ text: C, url: Bool) -> [UInt8]? {
        guard text.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in text {
            guard let d = digit(c, url: url) else { return nil }
            acc = (acc << 6) | UInt32(d)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
                acc &= (1 << UInt32(bits)) - 1
            }
        }
        // Leftover bits must be zero: otherwise several spellings decode to the same bytes.
        guard acc == 0 else { return nil }
        return out
    }

    /// Encodes as padded standard base64.
    static func encodeStandard(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            var v = UInt32(bytes[i]) << 16
            if n > 1 { v |= UInt32(bytes[i + 1]) << 8 }
            if n > 2 { v |= UInt32(bytes[i + 2]) }
            for k in 0..<4 {
                out.append(k <= n ? table[Int((v >> UInt32(18 - 6 * k)) & 63)] : UInt8(ascii: "="))
            }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
