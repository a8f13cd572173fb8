import MicroSSEWire

/// A validated channel name: 1–128 characters of `A–Z a–z 0–9 . _ ~ -` (``ChannelNameRule``). A
/// value that exists is valid, so brokers never check again.
package struct ChannelName: Hashable, Sendable, CustomStringConvertible {
    /// The longest channel name accepted.
    package static let maxLength = ChannelNameRule.maxLength

    /// The name.
    package let rawValue: String

    /// Throws `.invalidChannel` with a one-line reason unless `name` is a valid channel name.
    package init(_ name: String) throws(MicroSSEError) {
        if let reason = ChannelNameRule.violation(name.utf8) {
            throw MicroSSEError(.invalidChannel, reason)
        }
        rawValue = name
    }

    /// A channel for the hub's own use, which no client can name: `name` must hold a character
    /// the rule refuses (a `:`, say), so that no `/events/…` request reaches it.
    package init(reserved name: String) {
        precondition(ChannelNameRule.violation(name.utf8) != nil && !name.isEmpty && name.utf8.count <= 128)
        rawValue = name
    }

    package var description: String { rawValue }
}
