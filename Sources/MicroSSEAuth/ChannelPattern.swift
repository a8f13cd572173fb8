import MicroSSEWire

/// A set of channels a token grants: one exact name, every name starting with a prefix
/// (`user.42.*`), or every channel (`*`).
///
/// A prefix is compared byte by byte and knows nothing of dots: `user.4*` matches `user.42`, and
/// `user.42.*` matches `user.42.x` but neither `user.42` nor `user.420`. The `*` stands for zero
/// or more characters, so `user.42.*` also matches the channel `user.42.` itself.
public struct ChannelPattern: Hashable, Sendable, CustomStringConvertible {
    /// What a pattern matches.
    public enum Kind: Hashable, Sendable {
        /// Exactly this channel name.
        case exact(String)
        /// Every channel name that starts with this prefix (the pattern without its `*`).
        case prefix(String)
        /// Every channel.
        case all
    }

    /// The longest name or prefix, in bytes (the longest channel name).
    public static let maximumLength = ChannelNameRule.maxLength

    /// What the pattern matches.
    public let kind: Kind

    /// Parses `text`: `*`, a channel name, or a channel name followed by `*`; the name is 1–128
    /// characters of `A–Z a–z 0–9 . _ ~ -` (the rule every channel name follows).
    public init(_ text: String) throws(AuthError) {
        var body = Substring(text)
        if body == "*" {
            kind = .all
            return
        }
        let isPrefix = body.hasSuffix("*")
        if isPrefix { body = body.dropLast() }
        if let reason = ChannelNameRule.violation(body.utf8) {
            throw AuthError(
                .invalidPattern, "channel pattern is not a name, a prefix ending in *, or * (\(reason))")
        }
        kind = isPrefix ? .prefix(String(body)) : .exact(String(body))
    }

    /// The pattern as written, e.g. `user.42.*`.
    public var description: String {
        switch kind {
        case .exact(let name): return name
        case .prefix(let prefix): return prefix + "*"
        case .all: return "*"
        }
    }

    /// Whether `channel` is in the set. `channel` is a valid channel name (the hub passes only
    /// names it has validated): the name is not checked again on every call.
    public func matches(_ channel: String) -> Bool {
        switch kind {
        case .exact(let name): return channel.utf8.elementsEqual(name.utf8)
        case .prefix(let prefix): return channel.utf8.starts(with: prefix.utf8)
        case .all: return true
        }
    }
}
