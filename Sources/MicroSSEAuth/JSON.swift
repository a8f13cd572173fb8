/// A JSON value as read from a token's header or claims.
package enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The number's text, exactly as written (validated against the JSON grammar).
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in order; a name occurs at most once (duplicates are refused by the parser).
    case object([(String, JSONValue)])

    package static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x.utf8.elementsEqual(y.utf8)
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0.utf8.elementsEqual($1.0.utf8) && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The member `name` of an object, or nil.
    package subscript(_ name: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0.utf8.elementsEqual(name.utf8) }?.1
    }

    /// The value of an integer number written without fraction or exponent, if it fits an `Int`.
    package var integer: Int? {
        guard case .number(let text) = self, !text.utf8.contains(where: { $0 == 0x2E || $0 | 0x20 == 0x65 }) else {
            return nil
        }
        return Int(text)
    }
}

/// A strict RFC 8259 parser: UTF-8 only, no trailing commas, no comments, no duplicate member
/// names (a second `alg` could be read differently by libjwt's parser), nesting at most
/// ``maximumDepth`` deep.
struct JSONParser {
    /// The deepest nesting of arrays and objects accepted.
    static let maximumDepth = 16

    private let bytes: [UInt8]
    private var index = 0

    /// Parses one JSON text; nil if it is not exactly one valid value with optional whitespace.
    static func parse(_ bytes: [UInt8]) -> JSONValue? {
        var parser = JSONParser(bytes: bytes)
        guard let value = parser.value(depth: 0) else { return nil }
        parser.skipWhitespace()
        return parser.index == bytes.count ? value : nil
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    private var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while let c = peek, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { index += 1 }
    }

    private mutating func literal(_ word: String) -> Bool {
        let w = word.utf8
        guard bytes.count - index >= w.count, bytes[index..<index + w.count].elementsEqual(w) else { return false }
        index += w.count
        return true
    }

    private mutating func value(depth: Int) -> JSONValue? {
        skipWhitespace()
        guard let c = peek else { return nil }
        switch c {
        case UInt8(ascii: "{"):
            guard depth < Self.maximumDepth else { return nil }
            return object(depth: depth + 1)
        case UInt8(ascii: "["):
            guard depth < Self.maximumDepth else { return nil }
            return array(depth: depth + 1)
        case UInt8(ascii: "\""): return string().map { .string($0) }
        case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
        case UInt8(ascii: "n"): return literal("null") ? .null : nil
        default: return number()
        }
    }

    private mutating func object(depth: Int) -> JSONValue? {
        index += 1
        var members: [(String, JSONValue)] = []
        skipWhitespace()
        if peek == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\""), let name = string() else { return nil }
            guard !members.contains(where: { $0.0.utf8.elementsEqual(name.utf8) }) else { return nil }
            skipWhitespace()
            guard peek == UInt8(ascii: ":") else { return nil }
            index += 1
            guard let v = value(depth: depth) else { return nil }
            members.append((name, v))
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return .object(members)
            default: return nil
            }
        }
    }

    private mutating func array(depth: Int) -> JSONValue? {
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            guard let v = value(depth: depth) else { return nil }
            elements.append(v)
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return .array(elements)
            default: return nil
            }
        }
    }

    private mutating func hex4() -> UInt32? {
        guard bytes.count - index >= 4 else { return nil }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            v = v << 4 | UInt32(d)
            index += 1
        }
        return v
    }

    private mutating func string() -> String? {
        index += 1
        var out: [UInt8] = []
        while let c = peek {
            index += 1
            switch c {
            case UInt8(ascii: "\""):
                return String(validating: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let e = peek else { return nil }
                index += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4() else { return nil }
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard literal("\\u"), let low = hex4(), (0xDC00...0xDFFF).contains(low) else { return nil }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { return nil }
                    out.append(contentsOf: UTF8.encode(u)!)
                default: return nil
                }
            case 0x00..<0x20: return nil
            default: out.append(c)
            }
        }
        return nil
    }

    private mutating func number() -> JSONValue? {
        let start = index
        if peek == UInt8(ascii: "-") { index += 1 }
        func isDigit(_ c: UInt8?) -> Bool { c.map { (0x30...0x39).contains($0) } ?? false }
        guard isDigit(peek) else { return nil }
        if peek == UInt8(ascii: "0") {
            index += 1
        } else {
            while isDigit(peek) { index += 1 }
        }
        if peek == UInt8(ascii: ".") {
            index += 1
            guard isDigit(peek) else { return nil }
            while isDigit(peek) { index += 1 }
        }
        if let e = peek, e | 0x20 == UInt8(ascii: "e") {
            index += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard isDigit(peek) else { return nil }
            while isDigit(peek) { index += 1 }
        }
        return .number(String(decoding: bytes[start..<index], as: UTF8.self))
    }
}
