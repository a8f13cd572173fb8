/// Where a request's token is found, and the pure functions that find it and keep it out of logs.
///
/// Sources are tried in a fixed order, and the first one *present* decides:
/// 1. `Authorization: Bearer TOKEN` (scheme case-insensitive; another scheme, such as `Basic`,
///    counts as absent);
/// 2. the cookie ``cookieName`` (first occurrence; a value in double quotes is unquoted);
/// 3. the query parameter ``queryName`` (first occurrence; already percent-decoded).
///
/// A present source whose value is not a usable token (empty, longer than
/// ``JWTVerifier/maximumTokenLength``, or holding a space, a control character, NUL or a
/// non-ASCII byte) yields no token at all: a later source is never used in its place.
public enum TokenSource: Sendable {
    /// Which part of the request carried the token.
    public enum Source: Sendable, Hashable, CustomStringConvertible {
        /// The `Authorization` header, `Bearer` scheme.
        case authorizationHeader
        /// The ``TokenSource/cookieName`` cookie.
        case cookie
        /// The ``TokenSource/queryName`` query parameter.
        case query

        /// A short name for logs: `header`, `cookie` or `query`.
        public var description: String {
            switch self {
            case .authorizationHeader: return "header"
            case .cookie: return "cookie"
            case .query: return "query"
            }
        }
    }

    /// The cookie that may carry the token.
    public static let cookieName = "microsseAuthorization"
    /// The query parameter that may carry the token (never logged: see ``redactedQuery(_:)``).
    public static let queryName = "authorization"

    /// Finds the token in a request's `Authorization` header, `Cookie` header and decoded query
    /// parameters, in that order of precedence; nil if there is none or it is unusable.
    public static func find(
        authorization: String?, cookieHeader: String?, query: [(name: String, value: String)]
    ) -> (token: String, source: Source)? {
        if let authorization, let token = bearer(authorization) {
            return usable(token).map { ($0, .authorizationHeader) }
        }
        if let cookieHeader, let token = cookie(named: cookieName, in: cookieHeader) {
            return usable(token).map { ($0, .cookie) }
        }
        if let param = query.first(where: { $0.name.utf8.elementsEqual(queryName.utf8) }) {
            return usable(Substring(param.value)).map { ($0, .query) }
        }
        return nil
    }

    /// The credentials of an `Authorization` header value if its scheme is `Bearer`, else nil.
    package static func bearer(_ value: String) -> Substring? {
        let v = Substring(value).trimmingSpaces()
        let scheme = v.prefix { $0 != " " && $0 != "\t" }
        guard scheme.utf8.count == 6, scheme.lowercased() == "bearer" else { return nil }
        return v.dropFirst(6).trimmingSpaces()
    }

    /// The value of the first cookie named `name` in a `Cookie` header value, unquoted; nil if
    /// there is no such cookie. Pieces without `=` are skipped.
    package static func cookie(named name: String, in header: String) -> Substring? {
        for piece in header.split(separator: ";", omittingEmptySubsequences: true) {
            guard let eq = piece.firstIndex(of: "=") else { continue }
            guard piece[..<eq].trimmingSpaces().utf8.elementsEqual(name.utf8) else { continue }
            var value = piece[piece.index(after: eq)...].trimmingSpaces()
            if value.utf8.count >= 2, value.first == "\"", value.last == "\"" {
                value = value.dropFirst().dropLast()
            }
            return value
        }
        return nil
    }

    /// The token if it is 1…maximumTokenLength bytes of visible ASCII (0x21–0x7E), else nil.
    package static func usable(_ token: Substring) -> String? {
        let bytes = token.utf8
        guard (1...JWTVerifier.maximumTokenLength).contains(bytes.count),
            bytes.allSatisfy({ (0x21...0x7E).contains($0) })
        else { return nil }
        return String(token)
    }

    /// A request target (`/path?query`) with the value of every query parameter named
    /// `authorization` (compared after percent-decoding, case-insensitively) replaced by
    /// `REDACTED`, for logs. Parameters are split at `&` and `;`; the rest is unchanged.
    public static func redactedQuery(_ pathAndQuery: String) -> String {
        guard let q = pathAndQuery.firstIndex(of: "?") else { return pathAndQuery }
        var out = String(pathAndQuery[...q])
        var piece: Substring = ""
        var rest = pathAndQuery[pathAndQuery.index(after: q)...]
        while true {
            let sep = rest.firstIndex { $0 == "&" || $0 == ";" }
            piece = rest[..<(sep ?? rest.endIndex)]
            if let eq = piece.firstIndex(of: "="), isAuthorizationName(piece[..<eq]) {
                out += piece[...eq] + "REDACTED"
            } else {
                out += piece
            }
            guard let sep else { break }
            out.append(rest[sep])
            rest = rest[rest.index(after: sep)...]
        }
        return out
    }

    /// Whether a raw query parameter name decodes to `authorization`, ignoring case.
    private static func isAuthorizationName(_ raw: Substring) -> Bool {
        var decoded: [UInt8] = []
        var bytes = raw.utf8[...]
        while let c = bytes.popFirst() {
            if c == UInt8(ascii: "%"), bytes.count >= 2,
                let hi = Base64.hexDigit(bytes[bytes.startIndex]),
                let lo = Base64.hexDigit(bytes[bytes.index(after: bytes.startIndex)])
            {
                decoded.append(hi << 4 | lo)
                bytes = bytes.dropFirst(2)
            } else {
                decoded.append(c == UInt8(ascii: "+") ? 0x20 : c)
            }
        }
        let name = queryName.utf8
        return decoded.count == name.count && zip(decoded, name).allSatisfy { $0 | 0x20 == $1 }
    }
}

extension Base64 {
    /// The value of a hexadecimal digit, or nil.
    static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
