/// The URL Pattern Living Standard's tokenizer and its two parsers: the constructor string
/// parser (one pattern string → its components) and the pattern parser (one component → parts).
/// Followed step by step; what MicroSSE does not serve is refused here with a one-line reason.
struct PatternToken {
    enum Kind: Equatable {
        case open, close, regexp, name, char, escapedChar, otherModifier, asterisk, end, invalidChar
    }

    let kind: Kind
    /// Where the token starts, in code points.
    let index: Int
    let value: String
}

/// Why a URL pattern is refused (`400`).
struct URLPatternError: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

enum PatternTokenizer {
    /// Tokenizes `input`; `strict` throws where the lenient policy makes an invalid-char token.
    static func tokenize(_ input: [Unicode.Scalar], strict: Bool) throws(URLPatternError) -> [PatternToken] {
        var tokens: [PatternToken] = []
        var i = 0
        func add(_ kind: PatternToken.Kind, _ start: Int, _ valueStart: Int, _ valueEnd: Int, next: Int) {
            var value = ""
            value.unicodeScalars.append(contentsOf: input[valueStart..<valueEnd])
            tokens.append(PatternToken(kind: kind, index: start, value: value))
            i = next
        }
        func error(_ reason: String, _ start: Int, next: Int) throws(URLPatternError) {
            if strict { throw URLPatternError(reason) }
            add(.invalidChar, start, start, start + 1, next: next)
        }
        while i < input.count {
            let c = input[i]
            switch c {
            case "*": add(.asterisk, i, i, i + 1, next: i + 1)
            case "+", "?": add(.otherModifier, i, i, i + 1, next: i + 1)
            case "{": add(.open, i, i, i + 1, next: i + 1)
            case "}": add(.close, i, i, i + 1, next: i + 1)
            case "\\":
                guard i + 1 < input.count else {
                    try error("a pattern must not end with an escaping backslash", i, next: i + 1)
                    continue
                }
                add(.escapedChar, i, i + 1, i + 2, next: i + 2)
            case ":":
                var j = i + 1
                while j < input.count && isNameCodePoint(input[j], first: j == i + 1) { j += 1 }
                guard j > i + 1 else {
                    try error("':' must start a group name (escape a literal colon as \\:)", i, next: i + 1)
                    continue
                }
                add(.name, i, i + 1, j, next: j)
            case "(":
                guard let end = try regexpEnd(input, from: i, strict: strict) else {
                    add(.invalidChar, i, i, i + 1, next: i + 1)
                    continue
                }
                add(.regexp, i, i + 1, end - 1, next: end)
            default: add(.char, i, i, i + 1, next: i + 1)
            }
        }
        tokens.append(PatternToken(kind: .end, index: input.count, value: ""))
        return tokens
    }

    /// The index just past the `)` closing the regexp group opened at `start`, or nil (lenient)
    /// when the group is malformed.
    private static func regexpEnd(_ input: [Unicode.Scalar], from start: Int, strict: Bool) throws(URLPatternError)
        -> Int?
    {
        func fail() throws(URLPatternError) -> Int? {
            if strict { throw URLPatternError("a regular-expression group is malformed") }
            return nil
        }
        var depth = 1
        var j = start + 1
        while j < input.count {
            let c = input[j]
            guard c.isASCII, !(j == start + 1 && c == "?") else { return try fail() }
            if c == "\\" {
                guard j + 1 < input.count, input[j + 1].isASCII else { return try fail() }
                j += 2
                continue
            }
            if c == ")" {
                depth -= 1
                if depth == 0 {
                    return j - start - 1 > 0 ? j + 1 : try fail()
                }
            } else if c == "(" {
                depth += 1
                guard j + 1 < input.count, input[j + 1] == "?" else { return try fail() }
            }
            j += 1
        }
        return try fail()
    }

    /// ECMAScript's IdentifierStart / IdentifierPart.
    static func isNameCodePoint(_ c: Unicode.Scalar, first: Bool) -> Bool {
        if c == "$" || c == "_" { return true }
        if first { return c.properties.isIDStart }
        return c.properties.isIDContinue || c == "\u{200C}" || c == "\u{200D}"
    }
}

/// A pattern's components as its string gave them (nil: not given).
struct PatternInit {
    var protocol_: String?
    var username: String?
    var password: String?
    var hostname: String?
    var port: String?
    var pathname: String?
    var search: String?
    var hash: String?
}

/// The constructor string parser (urlpattern.spec.whatwg.org, "Constructor string parsing").
struct ConstructorParser {
    enum State { case initial, protocol_, authority, username, password, hostname, port, pathname, search, hash, done }

    let input: [Unicode.Scalar]
    let tokens: [PatternToken]
    var result = PatternInit()
    var componentStart = 0
    var index = 0
    var increment = 1
    var groupDepth = 0
    var ipv6Depth = 0
    var protocolIsSpecial = false
    var state = State.initial

    static func parse(_ text: String) throws(URLPatternError) -> PatternInit {
        let input = Array(text.unicodeScalars)
        var p = ConstructorParser(input: input, tokens: try PatternTokenizer.tokenize(input, strict: false))
        try p.run()
        return p.result
    }

    private mutating func run() throws(URLPatternError) {
        while index < tokens.count {
            increment = 1
            if tokens[index].kind == .end {
                if state == .initial {
                    rewind()
                    if isChar(index, "#") {
                        change(.hash, skip: 1)
                    } else if isSearchPrefix() {
                        change(.search, skip: 1)
                    } else {
                        change(.pathname, skip: 0)
                    }
                    index += increment
                    continue
                }
                if state == .authority {
                    rewind()
                    state = .hostname
                    index += increment
                    continue
                }
                change(.done, skip: 0)
                break
            }
            if tokens[index].kind == .open {
                groupDepth += 1
                index += increment
                continue
            }
            if groupDepth > 0 {
                if tokens[index].kind == .close {
                    groupDepth -= 1
                } else {
                    index += increment
                    continue
                }
            }
            try step()
            index += increment
        }
        if result.hostname != nil && result.port == nil { result.port = "" }
    }

    private mutating func step() throws(URLPatternError) {
        switch state {
        case .initial:
            if isChar(index, ":") {
                rewind()
                state = .protocol_
            }
        case .protocol_:
            guard isChar(index, ":") else { return }
            let component = try PatternComponent(componentString(), encoding: URLCanon.protocolPart, delimiter: nil)
            protocolIsSpecial = component.matchesSpecialScheme
            if isChar(index + 1, "/") && isChar(index + 2, "/") {
                change(.authority, skip: 3)
            } else {
                change(protocolIsSpecial ? .authority : .pathname, skip: 1)
            }
        case .authority:
            if isChar(index, "@") {
                rewind()
                state = .username
            } else if isChar(index, "/") || isSearchPrefix() || isChar(index, "#") {
                rewind()
                state = .hostname
            }
        case .username:
            if isChar(index, ":") {
                change(.password, skip: 1)
            } else if isChar(index, "@") {
                change(.hostname, skip: 1)
            }
        case .password:
            if isChar(index, "@") { change(.hostname, skip: 1) }
        case .hostname:
            if isChar(index, "[") {
                ipv6Depth += 1
            } else if isChar(index, "]") {
                ipv6Depth -= 1
            } else if isChar(index, ":") && ipv6Depth == 0 {
                change(.port, skip: 1)
            } else {
                afterAuthority()
            }
        case .port: afterAuthority()
        case .pathname:
            if isSearchPrefix() {
                change(.search, skip: 1)
            } else if isChar(index, "#") {
                change(.hash, skip: 1)
            }
        case .search:
            if isChar(index, "#") { change(.hash, skip: 1) }
        case .hash, .done: break
        }
    }

    private mutating func afterAuthority() {
        if isChar(index, "/") {
            change(.pathname, skip: 0)
        } else if isSearchPrefix() {
            change(.search, skip: 1)
        } else if isChar(index, "#") {
            change(.hash, skip: 1)
        }
    }

    private mutating func rewind() {
        index = componentStart
        increment = 0
    }

    private func token(_ i: Int) -> PatternToken { i < tokens.count ? tokens[i] : tokens[tokens.count - 1] }

    /// A char, escaped char or invalid char token whose value is `value`.
    private func isChar(_ i: Int, _ value: String) -> Bool {
        let t = token(i)
        return t.value == value && (t.kind == .char || t.kind == .escapedChar || t.kind == .invalidChar)
    }

    private func isSearchPrefix() -> Bool {
        if isChar(index, "?") { return true }
        guard tokens[index].value == "?" else { return false }
        guard index > 0 else { return true }
        switch token(index - 1).kind {
        case .name, .regexp, .close, .asterisk: return false
        default: return true
        }
    }

    private func componentString() -> String {
        var s = ""
        let start = token(componentStart).index
        s.unicodeScalars.append(contentsOf: input[start..<max(start, tokens[index].index)])
        return s
    }

    private mutating func change(_ new: State, skip: Int) {
        let value = componentString()
        switch state {
        case .protocol_: result.protocol_ = value
        case .username: result.username = value
        case .password: result.password = value
        case .hostname: result.hostname = value
        case .port: result.port = value
        case .pathname: result.pathname = value
        case .search: result.search = value
        case .hash: result.hash = value
        case .initial, .authority, .done: break
        }
        if state != .initial && new != .done {
            let identity: [State] = [.protocol_, .authority, .username, .password]
            if result.hostname == nil && identity.contains(state) && [.port, .pathname, .search, .hash].contains(new) {
                result.hostname = ""
            }
            if result.pathname == nil && (identity + [.hostname, .port]).contains(state)
                && (new == .search || new == .hash)
            {
                result.pathname = protocolIsSpecial ? "/" : ""
            }
            if result.search == nil && (identity + [.hostname, .port, .pathname]).contains(state) && new == .hash {
                result.search = ""
            }
        }
        state = new
        index += skip
        componentStart = index
        increment = 0
    }
}
