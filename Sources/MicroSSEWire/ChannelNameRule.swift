/// The one rule for channel names: 1–128 bytes of `A–Z a–z 0–9 . _ ~ -`.
///
/// Core's `ChannelName` (a name that exists is valid) and MicroSSEAuth's `ChannelPattern` (the
/// name or prefix in a pattern) both check it here, once, when the value is made.
package enum ChannelNameRule {
    /// The longest channel name, in bytes.
    package static let maxLength = 128

    /// Nil when `bytes` is a valid channel name, else the one-line reason it is not.
    package static func violation<C: Collection<UInt8>>(_ bytes: C) -> String? {
        guard !bytes.isEmpty else { return "channel name is empty" }
        guard bytes.count <= maxLength else { return "channel name is longer than \(maxLength) characters" }
        if let byte = bytes.first(where: { !isAllowed($0) }) {
            return "channel name may only contain A-Z a-z 0-9 . _ ~ - (got \(describe(byte)))"
        }
        return nil
    }

    /// Whether `byte` may appear in a channel name.
    package static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
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
