/// A draft-08 `match_urlpattern` matcher: a WHATWG URL Pattern (urlpattern.spec.whatwg.org),
/// absolute (`https://example.com/books/:id`) or relative to the hub's URL (`/books/:id`),
/// matched against topics read as URLs (``URLParts``).
///
/// Served: the string form with its eight components, fixed text, named groups `:name`,
/// wildcards `*`, groups `{…}` with the modifiers `?`, `*` and `+`, escapes `\`, and the
/// regular-expression group `(.*)` (the wildcard's own). Refused when read (`400`, one line):
/// other regular-expression groups, internationalised hostnames in Unicode, more than
/// ``PatternComponent/maxGroups`` groups in a component. Never case-insensitive (the draft forbids it).
///
/// Each component is a Thompson NFA (``PatternComponent``): matching never backtracks, and
/// one evaluation may take at most ``budget`` steps, past which the pattern does not match
/// (the draft's evaluation cost limit). Verdicts are cached per (pattern, topic) by the bus.
/// A class: the bus copies patterns around on every publish, and a reference is one retain.
final class URLPattern: Hashable, Sendable {
    let source: Topic
    /// protocol, username, password, hostname, port, pathname, search, hash.
    let components: [PatternComponent]
    /// The hub's URL, which relative topics are read against when a token's grant asks.
    let base: URLParts

    /// The most NFA steps one evaluation may take (a topic of 2,048 bytes against a pattern
    /// with a few wildcards per component takes a few thousand).
    static let budget = 1 << 16
    /// The most groups and wildcards over the eight components (each holds at most
    /// ``PatternComponent/maxGroups``; an absent component is one wildcard).
    static let maxGroups = 64

    static func == (a: URLPattern, b: URLPattern) -> Bool { a.source == b.source }
    func hash(into hasher: inout Hasher) { hasher.combine(source) }

    /// Reads `text`; a relative pattern takes the missing components from `base` (the hub's
    /// URL). Throws a one-line reason.
    convenience init(_ text: String, base: URLParts) throws(URLPatternError) {
        try self.init(source: Topic(text), ConstructorParser.parse(text), base: base)
    }

    /// A pattern from its components (`source` names it in caches).
    init(source: Topic, _ given: PatternInit, base: URLParts?) throws(URLPatternError) {
        self.source = source
        self.base = base ?? HubURL.base(nil)
        var i = given
        if i.protocol_ == nil, let base {
            // "Process a URLPatternInit" with the hub's URL as base, type "pattern".
            let esc = URLCanon.escapePattern
            i.protocol_ = esc(base.protocol_)
            if i.hostname == nil {
                i.hostname = esc(base.hostname)
                if i.port == nil {
                    i.port = esc(base.port)
                    if i.pathname == nil {
                        i.pathname = esc(base.pathname)
                        if i.search == nil {
                            i.search = esc(base.search)
                            if i.hash == nil { i.hash = esc(base.hash) }
                        }
                    }
                }
            }
            if let path = i.pathname, !(path.hasPrefix("/") || path.hasPrefix("\\/") || path.hasPrefix("{/")) {
                let basePath = esc(base.pathname)
                if let slash = basePath.lastIndex(of: "/") { i.pathname = String(basePath[...slash]) + path }
            }
        }
        let protocolText = i.protocol_ ?? "*"
        var port = i.port ?? "*"
        if let standard = URLCanon.defaultPorts[protocolText.lowercased()], port == standard { port = "" }
        let protocol_ = try PatternComponent(protocolText, encoding: URLCanon.protocolPart, delimiter: nil)
        let special = protocol_.matchesSpecialScheme
        let hostname = i.hostname ?? "*"
        let ipv6 = hostname.hasPrefix("[") || hostname.hasPrefix("{[") || hostname.hasPrefix("\\[")
        let pathname: PatternComponent
        if special {
            pathname = try PatternComponent(
                i.pathname ?? "*", encoding: URLCanon.pathPart, delimiter: UInt8(ascii: "/"), prefix: UInt8(ascii: "/"))
        } else {
            pathname = try PatternComponent(i.pathname ?? "*", encoding: URLCanon.opaquePathPart, delimiter: nil)
        }
        let username = try PatternComponent(i.username ?? "*", encoding: URLCanon.userinfoPart, delimiter: nil)
        let password = try PatternComponent(i.password ?? "*", encoding: URLCanon.userinfoPart, delimiter: nil)
        let host =
            ipv6
            ? try PatternComponent(hostname, encoding: URLCanon.ipv6Part, delimiter: UInt8(ascii: "."))
            : try PatternComponent(hostname, encoding: URLCanon.hostnamePart, delimiter: UInt8(ascii: "."))
        let portComponent = try PatternComponent(port, encoding: URLCanon.portPart, delimiter: nil)
        let search = try PatternComponent(i.search ?? "*", encoding: URLCanon.searchPart, delimiter: nil)
        let hash = try PatternComponent(i.hash ?? "*", encoding: URLCanon.hashPart, delimiter: nil)
        self.components = [protocol_, username, password, host, portComponent, pathname, search, hash]
        let groups = self.components.reduce(0) { $0 + $1.groups }
        guard groups <= Self.maxGroups else {
            throw URLPatternError("a URL pattern may hold at most \(Self.maxGroups) groups and wildcards")
        }
    }

    /// Whether `topic`, read as a URL against the hub's, matches (uncached: a token's grant).
    func matches(_ topic: Topic) -> Bool {
        matches(URLParts.parse(String(decoding: topic.bytes, as: UTF8.self), base: base))
    }

    /// Whether the topic, read as `url` (nil: not a URL, which no pattern matches), matches;
    /// false too once the evaluation has spent ``budget`` steps.
    func matches(_ url: URLParts?) -> Bool {
        guard let url else { return false }
        var budget = Self.budget
        for (component, input) in zip(components, url.all) {
            guard component.matches(input, budget: &budget) == true else { return false }
        }
        return true
    }
}

/// What `match_urlpattern` values and topics are read against: the hub's URL, which is the
/// draft-08 audience when that is an absolute `http(s)` URL, else a name that cannot be a real
/// host (relative patterns then still match relative topics).
enum HubURL {
    static let fallback = "https://mercure.invalid" + MercureText.hubPath

    static func base(_ audience: String?) -> URLParts {
        if let audience, let url = URLParts.parse(audience, base: nil), url.isSpecial, !url.hostname.isEmpty {
            return url
        }
        return URLParts.parse(fallback, base: nil)!
    }
}

/// Verdicts of (pattern, topic) pairs (``VerdictCache``: bounded by count and bytes, emptied
/// when full). A topic is read as a URL once per update (``URLPatternCache/Reader``), whatever
/// the number of patterns.
struct URLPatternCache {
    private var verdicts = VerdictCache()

    /// The topics of one update, each read as a URL at most once.
    struct Reader {
        let base: URLParts
        private var read: [Topic: URLParts?] = [:]

        init(base: URLParts) { self.base = base }

        mutating func url(_ topic: Topic) -> URLParts? {
            if let known = read[topic] { return known }
            let url = URLParts.parse(String(decoding: topic.bytes, as: UTF8.self), base: base)
            read[topic] = url
            return url
        }
    }

    mutating func matches(_ pattern: URLPattern, _ topic: Topic, _ reader: inout Reader) -> Bool {
        verdicts.verdict(pattern.source, topic) { pattern.matches(reader.url(topic)) }
    }
}
