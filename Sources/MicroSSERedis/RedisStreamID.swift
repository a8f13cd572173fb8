import MicroSSECore
import MicroSSEWire

/// A Redis stream entry id, `MILLISECONDS-SEQUENCE`, ordered as Redis orders them.
package struct RedisStreamID: Comparable, Hashable, Sendable, CustomStringConvertible {
    package var milliseconds: UInt64
    package var sequence: UInt64

    package static let zero = RedisStreamID(milliseconds: 0, sequence: 0)

    package init(milliseconds: UInt64, sequence: UInt64) {
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    /// Parses `123-4`; nil for anything else.
    package init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let ms = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return nil }
        milliseconds = ms
        sequence = seq
    }

    /// Parses `123-4` from a reply's bytes, without making a string; nil for anything else.
    package init?(bytes: [UInt8]) {
        var ms: UInt64 = 0
        var seq: UInt64 = 0
        var dash = false
        var digits = 0
        for b in bytes {
            if b == UInt8(ascii: "-") {
                guard !dash, digits > 0 else { return nil }
                dash = true
                digits = 0
                continue
            }
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9"), digits < 19 else { return nil }
            let d = UInt64(b - UInt8(ascii: "0"))
            if dash { seq = seq * 10 + d } else { ms = ms * 10 + d }
            digits += 1
        }
        guard dash, digits > 0 else { return nil }
        milliseconds = ms
        sequence = seq
    }

    package var description: String { "\(milliseconds)-\(sequence)" }

    package static func < (a: RedisStreamID, b: RedisStreamID) -> Bool {
        (a.milliseconds, a.sequence) < (b.milliseconds, b.sequence)
    }
}

extension RedisStreamID {
    /// The global-stream entry an id of this hub names: a position in the hub's form (one log,
    /// `ms-seq` offset), or a stream id from before positions; nil for anything else.
    package init?(position id: String) {
        if let positions = HubID.decode(id) {
            guard positions.count == 1, let minor = positions[0].minor else { return nil }
            self.init(milliseconds: positions[0].major, sequence: minor)
        } else {
            self.init(id)
        }
    }
}
