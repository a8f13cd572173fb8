/// The draft's rules for the strings a publisher or subscriber sends, each in one place.
enum MercureText {
    /// Why `value` (a topic, matcher, id or type, named `what`) is not acceptable, or nil: it
    /// must not hold C0 or C1 controls, U+007F or a format character (general category Cf, such
    /// as bidirectional and zero-width controls). Strings here are valid UTF-8 already.
    static func invalidCharacter(_ value: String, _ what: String) -> String? {
        for scalar in value.unicodeScalars {
            let v = scalar.value
            if v < 0x20 || (0x7F...0x9F).contains(v) || scalar.properties.generalCategory == .format {
                let hex = String(v, radix: 16, uppercase: true)
                return
                    "\(what) holds the control or format character U+\(String(repeating: "0", count: max(0, 4 - hex.count)) + hex)"
            }
        }
        return nil
    }

    /// The path of the hub's URL: topics under it are reserved for the hub's own resources.
    static let hubPath = "/.well-known/mercure"
    private static let mercure = Array("mercure".utf8)

    /// Whether `topic`, resolved against the hub's URL, addresses the reserved namespace: its
    /// path, with percent-encoded unreserved characters decoded and dot-segments removed, is the
    /// hub's path or below it, whatever the scheme and authority. A topic with an opaque path
    /// (`urn:x`) cannot name a hub path.
    static func isReserved(_ topic: String) -> Bool {
        // Fast path (every publish): without `%`, a reserved topic is the hub's URL itself (empty,
        // `?…`, `#…`) or holds the hub path's last segment as it is.
        let bytes = Array(topic.utf8)
        if let first = bytes.first, first != UInt8(ascii: "?"), first != UInt8(ascii: "#"),
            !bytes.contains(UInt8(ascii: "%")), !bytes.indices.contains(where: { bytes[$0...].starts(with: mercure) })
        {
            return false
        }
        guard let path = resolvedPath(topic) else { return false }
        let normal = removeDotSegments(decodeUnreserved(path))
        return normal == hubPath || normal.hasPrefix(hubPath + "/")
    }

    /// The path of `topic` resolved against `https://hub/.well-known/mercure` (without the
    /// dot-segment removal), or nil for an opaque path.
    static func resolvedPath(_ topic: String) -> String? {
        var rest = Substring(topic)
        var special = true
        if let scheme = scheme(of: rest) {
            rest = rest.dropFirst(scheme.count + 1)
            special = ["http", "https", "ws", "wss", "ftp", "file"].contains(scheme.lowercased())
        } else if topic.isEmpty {
            return hubPath
        }
        // WHATWG URL: special schemes read `\` as `/`.
        let text = special ? String(rest).replacingBackslashes() : String(rest)
        var r = Substring(text)
        if let end = r.firstIndex(where: { $0 == "?" || $0 == "#" }) { r = r[..<end] }
        if r.hasPrefix("//") {
            let afterAuthority = r.dropFirst(2).drop { $0 != "/" }
            return afterAuthority.isEmpty ? "/" : String(afterAuthority)
        }
        if r.hasPrefix("/") { return String(r) }
        if scheme(of: Substring(topic)) != nil && !special { return nil }  // opaque: urn:x, mailto:x
        if r.isEmpty { return hubPath }  // `?x`, `#x`: the base's path
        // A relative path: merged with the hub's (its last segment, `mercure`, dropped).
        return "/.well-known/" + r
    }

    /// The scheme of a URI reference (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"`), or nil.
    private static func scheme(of s: Substring) -> String? {
        guard let colon = s.firstIndex(of: ":"), colon != s.startIndex else { return nil }
        let name = s[..<colon]
        guard let first = name.utf8.first, isAlpha(first) else { return nil }
        guard
            name.utf8.allSatisfy({
                isAlpha($0) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-")
                    || $0 == UInt8(ascii: ".")
            })
        else { return nil }
        return String(name)
    }

    private static func isAlpha(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }

    /// `%XX` sequences of unreserved characters (`A–Z a–z 0–9 - . _ ~`) decoded; others kept.
    static func decodeUnreserved(_ path: String) -> String {
        let bytes = Array(path.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count, let h = hex(bytes[i + 1]), let l = hex(bytes[i + 2])
            {
                let c = h << 4 | l
                if isAlpha(c) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")
                    || c == UInt8(ascii: "_") || c == UInt8(ascii: "~")
                {
                    out.append(c)
                    i += 3
                    continue
                }
            }
            out.append(bytes[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// RFC 3986 §5.2.4 on an absolute path.
    static func removeDotSegments(_ path: String) -> String {
        var output: [Substring] = []
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        for (index, segment) in segments.enumerated() {
            let last = index == segments.count - 1
            switch segment {
            case ".":
                if last { output.append("") }
            case "..":
                if !output.isEmpty { output.removeLast() }
                if last { output.append("") }
            default:
                output.append(segment)
            }
        }
        return "/" + output.joined(separator: "/")
    }

    /// Decodes an `application/x-www-form-urlencoded` body (WHATWG URL: `&`-separated, `+` is a
    /// space, `%XX` decoded, a `%` not followed by two hex digits kept). nil when a name or value
    /// is not UTF-8 once decoded.
    static func parseForm(_ body: [UInt8]) -> [(name: String, value: String)]? {
        var pairs: [(name: String, value: String)] = []
        for piece in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let eq = piece.firstIndex(of: UInt8(ascii: "="))
            let rawName = eq.map { piece[piece.startIndex..<$0] } ?? piece[...]
            let rawValue = eq.map { piece[piece.index(after: $0)...] } ?? []
            guard let name = decodeFormComponent(rawName), let value = decodeFormComponent(rawValue) else {
                return nil
            }
            pairs.append((name, value))
        }
        return pairs
    }

    private static func decodeFormComponent(_ bytes: ArraySlice<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
            } else if b == UInt8(ascii: "%"), i + 2 < bytes.endIndex, let h = hex(bytes[i + 1]),
                let l = hex(bytes[i + 2])
            {
                out.append(h << 4 | l)
                i += 3
                continue
            } else {
                out.append(b)
            }
            i += 1
        }
        return String(validating: out, as: UTF8.self)
    }

    /// Whether a `Content-Type` value is the form's media type (any case, parameters and blanks
    /// around it ignored), compared as bytes: it is read on every publish.
    static func isForm(_ contentType: String) -> Bool {
        let blank: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
        let media = contentType.utf8.prefix { $0 != UInt8(ascii: ";") }.drop(while: blank).reversed().drop(while: blank)
        let form = "application/x-www-form-urlencoded".utf8
        return media.count == form.count && zip(media.reversed(), form).allSatisfy { $0 | 0x20 == $1 | 0x20 }
    }

    /// A random version-4 UUID as `urn:uuid:…` (the draft's recommended form for hub-generated
    /// ids: opaque, so a cursor reveals nothing of events its reader may not see).
    static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        // Two draws of 64 bits (one system call each), not one per byte.
        let (high, low) = (generator.next(), generator.next())
        var bytes = (0..<16).map { i in UInt8(truncatingIfNeeded: (i < 8 ? high : low) >> (8 * (i % 8))) }
        bytes[6] = bytes[6] & 0x0F | 0x40
        bytes[8] = bytes[8] & 0x3F | 0x80
        let digits = Array("0123456789abcdef".utf8)
        var out = Array("urn:uuid:".utf8)
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension String {
    fileprivate func replacingBackslashes() -> String {
        String(decoding: utf8.map { $0 == UInt8(ascii: "\\") ? UInt8(ascii: "/") : $0 }, as: UTF8.self)
    }
}
