/// A draft-07 topic selector that is an RFC 6570 URI template, matched against topics.
///
/// Served: literals and one-variable expressions `{var}` (unreserved characters and `%XX`),
/// `{+var}` (reserved characters too) and `{#var}` (empty, or `#` and reserved characters);
/// bytes of 0x80 and above (IRI characters) match in every expression. Other operators, value
/// modifiers (`:3`, `*`) and lists (`{a,b}`) are refused when the template is read.
///
/// Matching is linear: one pass over the topic per part of the template (a literal is found
/// with Knuth–Morris–Pratt), carrying the set of positions reached (no backtracking, so no
/// pattern can make a publish expensive), and templates hold at most ``maxExpressions``
/// expressions.
struct URITemplate: Hashable, Sendable {
    enum Part: Hashable, Sendable {
        case literal([UInt8])
        case simple
        case reserved
        case fragment
    }

    /// The most expressions a template may hold.
    static let maxExpressions = 16

    let source: Topic
    let parts: [Part]

    /// Whether `text` is a template (holds `{`) rather than an exact topic.
    static func isTemplate(_ text: String) -> Bool { text.utf8.contains(UInt8(ascii: "{")) }

    /// Reads `text`; throws a one-line reason for what is not served.
    init(_ text: String) throws(TemplateError) {
        source = Topic(text)
        var parts: [Part] = []
        var literal: [UInt8] = []
        var expressions = 0
        var bytes = text.utf8[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "}") { throw TemplateError("a '}' without '{'") }
            guard b == UInt8(ascii: "{") else {
                literal.append(b)
                continue
            }
            guard let close = bytes.firstIndex(of: UInt8(ascii: "}")) else { throw TemplateError("a '{' without '}'") }
            var body = bytes[..<close]
            bytes = bytes[bytes.index(after: close)...]
            var part = Part.simple
            if let op = body.first, op == UInt8(ascii: "+") || op == UInt8(ascii: "#") {
                part = op == UInt8(ascii: "+") ? .reserved : .fragment
                body = body.dropFirst()
            }
            guard !body.isEmpty,
                body.allSatisfy({
                    ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_")
                        || $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: ".")
                })
            else {
                throw TemplateError(
                    "only {var}, {+var} and {#var} expressions are served (no other operator, list or modifier)")
            }
            expressions += 1
            guard expressions <= Self.maxExpressions else {
                throw TemplateError("a template may hold at most \(Self.maxExpressions) expressions")
            }
            if !literal.isEmpty { parts.append(.literal(literal)) }
            literal = []
            parts.append(part)
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        self.parts = parts
    }

    /// Whether `topic` is an expansion of the template.
    func matches(_ topic: Topic) -> Bool {
        let t = topic.bytes
        let n = t.count
        var reach = [Bool](repeating: false, count: n + 1)
        reach[0] = true
        for part in parts {
            var next = [Bool](repeating: false, count: n + 1)
            var any = false
            switch part {
            case .literal(let lit):
                for i in Self.occurrences(of: lit, in: t) where reach[i] {
                    next[i + lit.count] = true
                    any = true
                }
            case .simple, .reserved:
                any = Self.sweep(t, reach, &next, reserved: part == .reserved)
            case .fragment:
                var afterHash = [Bool](repeating: false, count: n + 1)
                for i in 0..<n where reach[i] && t[i] == UInt8(ascii: "#") { afterHash[i + 1] = true }
                _ = Self.sweep(t, afterHash, &next, reserved: true)
                for i in 0...n where reach[i] { next[i] = true }
                any = next.contains(true)
            }
            guard any else { return false }
            reach = next
        }
        return reach[n]
    }

    /// Every index where `pattern` occurs in `text` (Knuth–Morris–Pratt: linear in both).
    static func occurrences(of pattern: [UInt8], in text: [UInt8]) -> [Int] {
        guard !pattern.isEmpty, pattern.count <= text.count else { return [] }
        var failure = [Int](repeating: 0, count: pattern.count)
        var k = 0
        for i in 1..<max(1, pattern.count) where pattern.count > 1 {
            while k > 0 && pattern[i] != pattern[k] { k = failure[k - 1] }
            if pattern[i] == pattern[k] { k += 1 }
            failure[i] = k
        }
        var found: [Int] = []
        k = 0
        for (i, b) in text.enumerated() {
            while k > 0 && b != pattern[k] { k = failure[k - 1] }
            if b == pattern[k] { k += 1 }
            if k == pattern.count {
                found.append(i - k + 1)
                k = failure[k - 1]
            }
        }
        return found
    }

    /// `next[j]` for every `j` reachable from a reached `i ≤ j` over characters of the class.
    private static func sweep(_ t: [UInt8], _ reach: [Bool], _ next: inout [Bool], reserved: Bool) -> Bool {
        var carry = false
        var any = false
        for j in 0...t.count {
            if reach[j] { carry = true }
            if carry {
                next[j] = true
                any = true
            }
            if j < t.count && !(reserved ? isReservedExpansion(t[j]) : isSimpleExpansion(t[j])) { carry = false }
        }
        return any
    }

    /// Unreserved characters, `%` of `%XX`, and IRI bytes.
    private static func isSimpleExpansion(_ b: UInt8) -> Bool {
        (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-")
            || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "~") || b == UInt8(ascii: "%")
            || b >= 0x80
    }

    /// What `{+var}` may expand to: the simple set and the reserved characters.
    private static func isReservedExpansion(_ b: UInt8) -> Bool {
        isSimpleExpansion(b) || Array(":/?#[]@!$&'()*+,;=".utf8).contains(b)
    }
}

/// Why a template is not served.
struct TemplateError: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Verdicts of (matcher, topic) pairs, bounded by count and by the bytes of their keys: emptied
/// when full, so a stream of distinct topics costs memory up to the bound and a match per pair at
/// most once until then. Shared by URI templates and URL patterns (keyed by their source text).
struct VerdictCache {
    static let capacity = 16_384
    static let byteCapacity = 4 << 20

    private struct Key: Hashable {
        let matcher: Topic
        let topic: Topic
    }

    private var verdicts: [Key: Bool] = [:]
    private var bytes = 0

    /// The verdict for (`matcher`, `topic`), from `match` the first time.
    mutating func verdict(_ matcher: Topic, _ topic: Topic, _ match: () -> Bool) -> Bool {
        let key = Key(matcher: matcher, topic: topic)
        if let known = verdicts[key] { return known }
        let verdict = match()
        let cost = key.matcher.bytes.count + key.topic.bytes.count + 64
        if verdicts.count >= Self.capacity || bytes + cost > Self.byteCapacity {
            verdicts.removeAll(keepingCapacity: true)
            bytes = 0
        }
        verdicts[key] = verdict
        bytes += cost
        return verdict
    }
}

/// Verdicts of (template, topic) pairs (``VerdictCache``).
struct TemplateCache {
    private var verdicts = VerdictCache()

    mutating func matches(_ template: URITemplate, _ topic: Topic) -> Bool {
        verdicts.verdict(template.source, topic) { template.matches(topic) }
    }
}
