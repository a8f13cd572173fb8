/// One component of a URL pattern (its protocol, hostname, pathname…) compiled to a bounded
/// matcher: the standard's part list ("Parse a pattern string") turned into a Thompson NFA over
/// the component's bytes and run without backtracking, so a match costs at most (input bytes ×
/// states) steps whatever the pattern. A pattern only matches or not here (no captures), so the
/// standard's lazy and greedy repetitions accept the same inputs.
struct PatternComponent: Sendable {
    /// An NFA state; `next`/`alt` index the state list.
    enum State: Sendable {
        case byte(UInt8, next: Int)
        /// Any byte but the delimiter (nil: any byte).
        case notByte(UInt8?, next: Int)
        case split(Int, Int)
        case accept
    }

    indirect enum Node {
        case literal([UInt8])
        /// The segment wildcard (`:name`): one or more bytes, none the delimiter.
        case segment
        /// The full wildcard (`*`): any bytes, none too.
        case any
        case optional([Node])
        case zeroOrMore([Node])
        case oneOrMore([Node])
    }

    enum Modifier { case none, optional, zeroOrMore, oneOrMore }

    /// The most wildcards, named groups and optional or repeated groups one component may hold
    /// (``URLPattern/maxGroups`` over all of them).
    static let maxGroups = 32

    let states: [State]
    let start: Int
    /// Named, wildcard and modified groups in this component.
    let groups: Int

    /// Compiles `pattern` (one component's pattern string); `encoding` canonicalises its fixed
    /// text the way the URL parser would canonicalise the input; `delimiter` ends a segment.
    init(
        _ pattern: String, encoding: @escaping (String) throws(URLPatternError) -> String, delimiter: UInt8?,
        prefix: UInt8? = nil
    ) throws(URLPatternError) {
        var parser = PartParser(
            tokens: try PatternTokenizer.tokenize(Array(pattern.unicodeScalars), strict: true),
            encoding: encoding, prefix: prefix.map { String(UnicodeScalar($0)) } ?? "")
        let nodes = try parser.parse()
        var builder = Builder(delimiter: delimiter)
        let accept = builder.add(.accept)
        start = builder.emit(nodes, then: accept)
        states = builder.states
        groups = parser.groups
    }

    /// Whether the component matches the special schemes (a protocol component only).
    var matchesSpecialScheme: Bool {
        var budget = Int.max
        return URLCanon.specialSchemes.contains { matches(Array($0.utf8), budget: &budget) == true }
    }

    /// Whether `input` matches, or nil once `budget` steps are spent (taken from it).
    func matches(_ input: [UInt8], budget: inout Int) -> Bool? {
        var current: [Int] = []
        var next: [Int] = []
        var mark = [Int](repeating: -1, count: states.count)
        var stack: [Int] = []
        func close(_ s: Int, _ generation: Int, into list: inout [Int]) {
            stack.append(s)
            while let t = stack.popLast() {
                guard mark[t] != generation else { continue }
                mark[t] = generation
                budget -= 1
                if case .split(let a, let b) = states[t] {
                    stack.append(b)
                    stack.append(a)
                } else {
                    list.append(t)
                }
            }
        }
        close(start, 0, into: &current)
        for (i, b) in input.enumerated() {
            guard budget > 0 else { return nil }
            next.removeAll(keepingCapacity: true)
            for s in current {
                switch states[s] {
                case .byte(let want, let to) where want == b: close(to, i + 1, into: &next)
                case .notByte(let delimiter, let to) where delimiter != b: close(to, i + 1, into: &next)
                default: continue
                }
            }
            guard !next.isEmpty else { return false }
            swap(&current, &next)
        }
        guard budget > 0 else { return nil }
        return current.contains { if case .accept = states[$0] { true } else { false } }
    }

    /// Builds the states backwards: each node is emitted with the state that follows it.
    private struct Builder {
        let delimiter: UInt8?
        var states: [State] = []

        mutating func add(_ state: State) -> Int {
            states.append(state)
            return states.count - 1
        }

        mutating func emit(_ nodes: [Node], then next: Int) -> Int {
            var next = next
            for node in nodes.reversed() { next = emit(node, then: next) }
            return next
        }

        mutating func emit(_ node: Node, then next: Int) -> Int {
            switch node {
            case .literal(let bytes):
                var next = next
                for b in bytes.reversed() { next = add(.byte(b, next: next)) }
                return next
            case .segment:
                let loop = add(.split(-1, next))
                let one = add(.notByte(delimiter, next: loop))
                states[loop] = .split(one, next)
                return one
            case .any:
                let loop = add(.split(-1, next))
                let one = add(.notByte(nil, next: loop))
                states[loop] = .split(one, next)
                return loop
            case .optional(let inner):
                return add(.split(emit(inner, then: next), next))
            case .zeroOrMore(let inner), .oneOrMore(let inner):
                let loop = add(.split(-1, next))
                let first = emit(inner, then: loop)
                states[loop] = .split(first, next)
                if case .oneOrMore = node { return first }
                return loop
            }
        }
    }
}

/// "Parse a pattern string": tokens (strict) → nodes, fixed text canonicalised.
private struct PartParser {
    let tokens: [PatternToken]
    let encoding: (String) throws(URLPatternError) -> String
    /// The component's prefix code point (`/` for pathnames).
    let prefix: String
    var index = 0
    var pending = ""
    var nodes: [PatternComponent.Node] = []
    var names: Set<String> = []
    var groups = 0

    init(
        tokens: [PatternToken], encoding: @escaping (String) throws(URLPatternError) -> String, prefix: String
    ) {
        self.tokens = tokens
        self.encoding = encoding
        self.prefix = prefix
    }

    mutating func parse() throws(URLPatternError) -> [PatternComponent.Node] {
        while index < tokens.count {
            let char = take(.char)
            let name = take(.name)
            let wildcard = try takeRegexpOrWildcard(name)
            if name != nil || wildcard != nil {
                var p = char?.value ?? ""
                if !p.isEmpty && p != prefix {
                    pending += p
                    p = ""
                }
                try flush()
                try addPart(prefix: p, name: name, wildcard: wildcard, suffix: "", modifier: takeModifier())
                continue
            }
            if let fixed = char ?? take(.escapedChar) {
                pending += fixed.value
                continue
            }
            if take(.open) != nil {
                let p = text()
                let name = take(.name)
                let wildcard = try takeRegexpOrWildcard(name)
                let suffix = text()
                guard take(.close) != nil else { throw URLPatternError("a '{' group is not closed by '}'") }
                try addPart(prefix: p, name: name, wildcard: wildcard, suffix: suffix, modifier: takeModifier())
                continue
            }
            try flush()
            guard take(.end) != nil else {
                throw URLPatternError("unexpected \(tokens[index].value.debugDescription) in the pattern")
            }
        }
        return nodes
    }

    private mutating func take(_ kind: PatternToken.Kind) -> PatternToken? {
        guard index < tokens.count, tokens[index].kind == kind else { return nil }
        index += 1
        return tokens[index - 1]
    }

    private mutating func takeRegexpOrWildcard(_ name: PatternToken?) throws(URLPatternError) -> PatternToken? {
        if let regexp = take(.regexp) {
            // A regular-expression group is served only when it is the full wildcard's own.
            guard regexp.value == ".*" else {
                throw URLPatternError(
                    "regular-expression groups (…) are not supported by this hub: use :name, * and {…}? instead")
            }
            return PatternToken(kind: .asterisk, index: regexp.index, value: "*")
        }
        return name == nil ? take(.asterisk) : nil
    }

    private mutating func takeModifier() -> PatternComponent.Modifier {
        guard let t = take(.otherModifier) ?? take(.asterisk) else { return .none }
        switch t.value {
        case "?": return .optional
        case "*": return .zeroOrMore
        default: return .oneOrMore
        }
    }

    private mutating func text() -> String {
        var s = ""
        while let t = take(.char) ?? take(.escapedChar) { s += t.value }
        return s
    }

    private mutating func flush() throws(URLPatternError) {
        guard !pending.isEmpty else { return }
        nodes.append(.literal(Array(try encoding(pending).utf8)))
        pending = ""
    }

    private mutating func addPart(
        prefix p: String, name: PatternToken?, wildcard: PatternToken?, suffix: String,
        modifier: PatternComponent.Modifier
    ) throws(URLPatternError) {
        if name == nil && wildcard == nil && modifier == .none {
            pending += p
            return
        }
        try flush()
        let wrap: ([PatternComponent.Node]) -> PatternComponent.Node = {
            switch modifier {
            case .none, .optional: .optional($0)
            case .zeroOrMore: .zeroOrMore($0)
            case .oneOrMore: .oneOrMore($0)
            }
        }
        groups += 1
        guard groups <= PatternComponent.maxGroups else {
            throw URLPatternError("a URL pattern may hold at most \(PatternComponent.maxGroups) groups and wildcards")
        }
        if name == nil && wildcard == nil {
            guard suffix.isEmpty else { throw URLPatternError("a group without a name or wildcard has a suffix") }
            guard !p.isEmpty else { return }
            nodes.append(wrap([.literal(Array(try encoding(p).utf8))]))
            return
        }
        if let name {
            guard names.insert(name.value).inserted else {
                throw URLPatternError("the group name :\(name.value) is used twice")
            }
        }
        let value: PatternComponent.Node = wildcard == nil ? .segment : .any
        let before = Array(try encoding(p).utf8)
        let after = Array(try encoding(suffix).utf8)
        if before.isEmpty && after.isEmpty {
            nodes.append(modifier == .none ? value : wrap([value]))
            return
        }
        let body: [PatternComponent.Node] = [.literal(before), value, .literal(after)]
        switch modifier {
        case .none: nodes.append(contentsOf: body)
        case .optional: nodes.append(.optional(body))
        case .zeroOrMore, .oneOrMore:
            let repeated: [PatternComponent.Node] = [
                .literal(before), value, .zeroOrMore([.literal(after), .literal(before), value]), .literal(after),
            ]
            if modifier == .zeroOrMore {
                nodes.append(.optional(repeated))
            } else {
                nodes.append(contentsOf: repeated)
            }
        }
    }
}
