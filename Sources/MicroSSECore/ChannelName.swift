import MicroSSEWire

/// A validated channel name: 1–128 characters of `A–Z a–z 0–9 . _ ~ -`. A value that exists is
/// valid, so brokers never check again.
package struct ChannelName: Hashable, Sendable, CustomStringConvertible {
    /// The longest channel name accepted.
    package static let maxLength = 128

    /// The name.
    package let rawValue: String

    /// Throws `.invalidChannel` with a one-line reason unless `name` is a valid channel name.
    package init(_ name: String) throws(MicroSSEError) {
        let utf8 = name.utf8
        guard !utf8.isEmpty else {
            throw MicroSSEError(.invalidChannel, "channel name is empty")
        }
        guard utf8.count <= Self.maxLength else {
            throw MicroSSEError(.invalidChannel, "channel name is longer than \(Self.maxLength) characters")
        }
        for byte in utf8 where !Self.isAllowed(byte) {
            throw MicroSSEError(
                .invalidChannel, "channel name may only contain A-Z a-z 0-9 . _ ~ - (got \(Self.describe(byte)))")
        }
        rawValue = name
    }

    package var description: String { rawValue }

    private static func isAllowed(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
            UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    private static func describe(_ b: UInt8) -> String {
        b >= 0x21 && b < 0x7F ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x" + String(b, radix: 16)
    }
}
