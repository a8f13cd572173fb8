/// A topic read as a URL the way URL Pattern matching reads it (the WHATWG URL parser, the
/// parts a topic uses): its eight components, canonical, relative topics resolved against the
/// hub's URL. What MicroSSE's reader does not canonicalise (IDN hostnames, IPv4 in other forms
/// than dotted decimal, IPv6 compression) makes the topic unmatchable rather than wrongly matched.
struct URLParts: Sendable, Equatable {
    var protocol_: [UInt8] = []
    var username: [UInt8] = []
    var password: [UInt8] = []
    var hostname: [UInt8] = []
    var port: [UInt8] = []
    var pathname: [UInt8] = []
    var search: [UInt8] = []
    var hash: [UInt8] = []

    var all: [[UInt8]] { [protocol_, username, password, hostname, port, pathname, search, hash] }
    var isSpecial: Bool { URLCanon.specialSchemes.contains(String(decoding: protocol_, as: UTF8.self)) }

    /// Reads `text`; a relative reference is resolved against `base`. Nil: not a URL.
    static func parse(_ text: String, base: URLParts?) -> URLParts? {
        let s = Array(text.utf8).filter { $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }[...]
        let input = s.drop { $0 <= 0x20 }.reversed().drop { $0 <= 0x20 }.reversed()
        let bytes = Array(input)[...]
        if let colon = URLCanon.schemeEnd(bytes) {
            var u = URLParts()
            u.protocol_ = bytes[..<colon].map { $0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A ? $0 | 0x20 : $0 }
            var rest = bytes[(colon + 1)...]
            if u.isSpecial {
                if u.protocol_ == Array("file".utf8) {
                    guard rest.starts(with: Array("//".utf8)) else { return u.withPath(rest, from: []) }
                    rest = rest.dropFirst(2)
                } else {
                    rest = rest.drop { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "\\") }
                }
                return u.withAuthority(rest)
            }
            if rest.starts(with: Array("//".utf8)) { return u.withAuthority(rest.dropFirst(2)) }
            if rest.first == UInt8(ascii: "/") { return u.withPath(rest, from: []) }
            // An opaque path (`urn:x`, `mailto:x`).
            let (path, search, hash) = URLCanon.splitQuery(rest)
            u.pathname = URLCanon.encode(path, URLCanon.isC0Control)
            return u.withQuery(search, hash)
        }
        guard var u = base, u.isSpecial else { return nil }
        let slash: (UInt8) -> Bool = { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "\\") }
        if bytes.count >= 2 && slash(bytes[bytes.startIndex]) && slash(bytes[bytes.startIndex + 1]) {
            return parse(String(decoding: u.protocol_, as: UTF8.self) + ":" + text, base: nil)
        }
        u.hash = []
        if let first = bytes.first, slash(first) { return u.withPath(bytes, from: []) }
        if bytes.first == UInt8(ascii: "?") || bytes.first == UInt8(ascii: "#") || bytes.isEmpty {
            let (_, search, hash) = URLCanon.splitQuery(bytes)
            return u.withQuery(search ?? (bytes.first == UInt8(ascii: "?") ? nil : u.search[...]), hash)
        }
        var segments = u.pathname.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
            .map(Array.init)
        if !segments.isEmpty { segments.removeLast() }
        return u.withPath(bytes, from: segments, relative: true)
    }

    /// `rest` after `//`: userinfo, host, port, then the path.
    private func withAuthority(_ rest: ArraySlice<UInt8>) -> URLParts? {
        var u = self
        let special = isSpecial
        let end =
            rest.firstIndex {
                $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#")
                    || (special && $0 == UInt8(ascii: "\\"))
            } ?? rest.endIndex
        var authority = rest[..<end]
        if let at = authority.lastIndex(of: UInt8(ascii: "@")) {
            let info = authority[..<at]
            let colon = info.firstIndex(of: UInt8(ascii: ":")) ?? info.endIndex
            u.username = URLCanon.encode(info[..<colon], URLCanon.isUserinfo)
            u.password = colon < info.endIndex ? URLCanon.encode(info[(colon + 1)...], URLCanon.isUserinfo) : []
            authority = authority[(at + 1)...]
        }
        var host = authority
        var port: ArraySlice<UInt8> = []
        if authority.first == UInt8(ascii: "[") {
            guard let close = authority.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            host = authority[...close]
            let after = authority[(close + 1)...]
            guard after.isEmpty || after.first == UInt8(ascii: ":") else { return nil }
            port = after.dropFirst()
        } else if let colon = authority.lastIndex(of: UInt8(ascii: ":")) {
            host = authority[..<colon]
            port = authority[(colon + 1)...]
        }
        guard let canonicalHost = URLCanon.host(host, special: special) else { return nil }
        guard !(special && canonicalHost.isEmpty && u.protocol_ != Array("file".utf8)) else { return nil }
        u.hostname = canonicalHost
        if !port.isEmpty {
            guard port.count <= 5, port.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let n = Int(String(decoding: port, as: UTF8.self)), n <= 65_535
            else { return nil }
            let text = String(n)
            u.port = URLCanon.defaultPorts[String(decoding: u.protocol_, as: UTF8.self)] == text ? [] : Array(text.utf8)
        }
        return u.withPath(rest[end...], from: [])
    }

    /// The path (then query and fragment) of `rest`, after `segments` (a relative reference's
    /// base directory), dot-segments removed.
    private func withPath(_ rest: ArraySlice<UInt8>, from start: [[UInt8]], relative: Bool = false) -> URLParts {
        var u = self
        let special = isSpecial
        let (path, search, hash) = URLCanon.splitQuery(rest)
        if path.isEmpty && !special && !relative {
            u.pathname = []
            return u.withQuery(search, hash)
        }
        var text = Array(path)
        if special { text = text.map { $0 == UInt8(ascii: "\\") ? UInt8(ascii: "/") : $0 } }
        if !relative && text.first == UInt8(ascii: "/") { text.removeFirst() }
        var segments = start
        let pieces = text.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        for (i, piece) in pieces.enumerated() {
            let last = i == pieces.count - 1
            let lower = String(decoding: piece, as: UTF8.self).lowercased()
            if ["..", ".%2e", "%2e.", "%2e%2e"].contains(lower) {
                if !segments.isEmpty { segments.removeLast() }
                if last { segments.append([]) }
            } else if [".", "%2e"].contains(lower) {
                if last { segments.append([]) }
            } else {
                segments.append(URLCanon.encode(piece, URLCanon.isPath))
            }
        }
        u.pathname = [UInt8(ascii: "/")] + Array(segments.joined(separator: [UInt8(ascii: "/")]))
        return u.withQuery(search, hash)
    }

    private func withQuery(_ search: ArraySlice<UInt8>?, _ hash: ArraySlice<UInt8>?) -> URLParts {
        var u = self
        let special = isSpecial
        u.search = search.map { URLCanon.encode($0) { URLCanon.isQuery($0) || (special && $0 == 0x27) } } ?? []
        u.hash = hash.map { URLCanon.encode($0, URLCanon.isFragment) } ?? []
        return u
    }
}

/// The URL parser's rules both sides use: percent-encode sets, schemes, hosts, and the
/// canonicalisation of a pattern's fixed text (the standard's "encoding callbacks").
enum URLCanon {
    static let specialSchemes = ["ftp", "file", "http", "https", "ws", "wss"]
    static let defaultPorts = ["ftp": "21", "http": "80", "https": "443", "ws": "80", "wss": "443"]

    static func isC0Control(_ b: UInt8) -> Bool { b < 0x20 || b > 0x7E }
    static func isFragment(_ b: UInt8) -> Bool { isC0Control(b) || Array(" \"<>`".utf8).contains(b) }
    static func isQuery(_ b: UInt8) -> Bool { isC0Control(b) || Array(" \"#<>".utf8).contains(b) }
    static func isPath(_ b: UInt8) -> Bool { isQuery(b) || Array("?^`{}".utf8).contains(b) }
    static func isUserinfo(_ b: UInt8) -> Bool { isPath(b) || Array("/:;=@[\\]|".utf8).contains(b) }

    /// `bytes` with the bytes of `set` percent-encoded (`%` itself is kept).
    static func encode(_ bytes: ArraySlice<UInt8>, _ set: (UInt8) -> Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in bytes {
            if set(b) {
                out += [UInt8(ascii: "%"), hex[Int(b >> 4)], hex[Int(b & 15)]]
            } else {
                out.append(b)
            }
        }
        return out
    }

    /// The index of the `:` ending a scheme at the start of `s`, or nil.
    static func schemeEnd(_ s: ArraySlice<UInt8>) -> Int? {
        guard let first = s.first, first | 0x20 >= 0x61 && first | 0x20 <= 0x7A else { return nil }
        for i in s.indices.dropFirst() {
            let b = s[i]
            if b == UInt8(ascii: ":") { return i }
            let ok =
                (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "+")
                || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
            if !ok { return nil }
        }
        return nil
    }

    /// `rest` cut at its `?` and `#`: (path, query, fragment).
    static func splitQuery(_ rest: ArraySlice<UInt8>) -> (
        ArraySlice<UInt8>, ArraySlice<UInt8>?, ArraySlice<UInt8>?
    ) {
        var head = rest
        var hash: ArraySlice<UInt8>?
        if let h = head.firstIndex(of: UInt8(ascii: "#")) {
            hash = head[(h + 1)...]
            head = head[..<h]
        }
        var search: ArraySlice<UInt8>?
        if let q = head.firstIndex(of: UInt8(ascii: "?")) {
            search = head[(q + 1)...]
            head = head[..<q]
        }
        return (head, search, hash)
    }

    /// A host, canonical: special schemes' domains lowercased after percent-decoding (ASCII
    /// only: IDN hosts are not converted), IPv6 literals lowercased; others percent-encoded.
    static func host(_ host: ArraySlice<UInt8>, special: Bool) -> [UInt8]? {
        let forbidden = Array(" #/:<>?@[\\]^|".utf8)
        if host.first == UInt8(ascii: "[") {
            let inner = host.dropFirst().dropLast()
            guard host.last == UInt8(ascii: "]"), inner.allSatisfy({ isHex($0) || $0 == UInt8(ascii: ":") })
            else { return nil }
            return host.map { $0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A ? $0 | 0x20 : $0 }
        }
        guard special else {
            guard !host.contains(where: { forbidden.contains($0) }) else { return nil }
            return encode(host, isC0Control)
        }
        var decoded: [UInt8] = []
        var i = host.startIndex
        while i < host.endIndex {
            if host[i] == UInt8(ascii: "%"), i + 2 < host.endIndex, let h = MercureText.hex(host[i + 1]),
                let l = MercureText.hex(host[i + 2])
            {
                decoded.append(h << 4 | l)
                i += 3
            } else {
                decoded.append(host[i])
                i += 1
            }
        }
        guard decoded.allSatisfy({ $0 > 0x20 && $0 < 0x7F && !forbidden.contains($0) && $0 != 0x25 }) else {
            return nil
        }
        return decoded.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    }

    static func isHex(_ b: UInt8) -> Bool { MercureText.hex(b) != nil }

    // MARK: A pattern's fixed text

    static func protocolPart(_ s: String) throws(URLPatternError) -> String {
        guard !s.isEmpty else { return s }
        guard schemeEnd(Array((s + ":").utf8)[...]) != nil else {
            throw URLPatternError("the pattern's protocol \(s.debugDescription) is not a scheme")
        }
        return s.lowercased()
    }

    static func userinfoPart(_ s: String) throws(URLPatternError) -> String {
        String(decoding: encode(Array(s.utf8)[...], isUserinfo), as: UTF8.self)
    }

    static func hostnamePart(_ s: String) throws(URLPatternError) -> String {
        guard !s.isEmpty else { return s }
        guard s.utf8.allSatisfy({ $0 < 0x80 }) else {
            throw URLPatternError("internationalised hostnames in patterns are not supported: write them as xn--")
        }
        guard let host = host(Array(s.utf8)[...], special: true) else {
            throw URLPatternError("the pattern's hostname \(s.debugDescription) is not a host")
        }
        return String(decoding: host, as: UTF8.self)
    }

    static func ipv6Part(_ s: String) throws(URLPatternError) -> String {
        guard s.utf8.allSatisfy({ isHex($0) || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]") || $0 == 0x3A })
        else { throw URLPatternError("the pattern's IPv6 hostname holds other characters than hex digits and ':'") }
        return s.lowercased()
    }

    static func portPart(_ s: String) throws(URLPatternError) -> String {
        guard !s.isEmpty else { return s }
        guard s.utf8.count <= 5, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(s), n <= 65_535 else {
            throw URLPatternError("the pattern's port \(s.debugDescription) is not a port number")
        }
        return String(n)
    }

    static func pathPart(_ s: String) throws(URLPatternError) -> String {
        String(decoding: encode(Array(s.utf8)[...], isPath), as: UTF8.self)
    }

    static func opaquePathPart(_ s: String) throws(URLPatternError) -> String {
        String(decoding: encode(Array(s.utf8)[...], isC0Control), as: UTF8.self)
    }

    static func searchPart(_ s: String) throws(URLPatternError) -> String {
        String(decoding: encode(Array(s.utf8)[...], isQuery), as: UTF8.self)
    }

    static func hashPart(_ s: String) throws(URLPatternError) -> String {
        String(decoding: encode(Array(s.utf8)[...], isFragment), as: UTF8.self)
    }

    /// A base URL's component as pattern text: the pattern syntax's characters escaped.
    static func escapePattern(_ bytes: [UInt8]) -> String {
        var out = ""
        for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars {
            if "+*?:{}()\\".unicodeScalars.contains(scalar) { out.unicodeScalars.append("\\") }
            out.unicodeScalars.append(scalar)
        }
        return out
    }
}
