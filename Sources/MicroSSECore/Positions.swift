import MicroSSEWire

/// A place in one of the hub's logs: the log's number, its epoch (the data set the position
/// belongs to) and the offset in it (see docs/DESIGN.md, "Positions, labels and epochs").
///
/// The in-memory broker's offsets are its sequence (`major`, no `minor`); the Redis broker's are
/// `PREFIX:all` entry ids (`major` milliseconds, `minor` sequence).
package struct HubPosition: Sendable, Hashable {
    package var log: Int
    package var epoch: String
    package var major: UInt64
    package var minor: UInt64?

    package init(log: Int = 0, epoch: String, major: UInt64, minor: UInt64? = nil) {
        self.log = log
        self.epoch = epoch
        self.major = major
        self.minor = minor
    }
}

/// The SSE id of a hub position: `~1.<log>.<epoch>.<offset>` per log, offsets in base 36
/// (`major` or `major-minor`). One line of URL-safe characters; ids starting with `~` are the
/// hub's and never a publisher's label.
package enum HubID {
    /// The first characters of every id in the hub's form, and what a label may not start with.
    package static let reservedPrefix = "~"
    static let version = "~1"
    /// Logs one id may name, at most (a stream reads at most this many logs).
    package static let maxLogs = 16
    /// Characters an epoch may have, at most.
    package static let maxEpochLength = 13

    /// The id of `positions` (one per log the stream reads, in log order).
    package static func encode(_ positions: [HubPosition]) -> String {
        var text = version
        for p in positions {
            text += "." + String(p.log, radix: 36) + "." + p.epoch + "." + String(p.major, radix: 36)
            if let minor = p.minor { text += "-" + String(minor, radix: 36) }
        }
        return text
    }

    /// ``encode(_:)`` of one position.
    package static func encode(_ position: HubPosition) -> String { encode([position]) }

    /// The positions `id` names, or nil when it is not in the hub's form (a label, an id from
    /// before positions, or garbage).
    package static func decode(_ id: String) -> [HubPosition]? {
        guard id.hasPrefix(version + ".") else { return nil }
        let parts = id.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).dropFirst()
        guard parts.count % 3 == 0, parts.count / 3 <= maxLogs else { return nil }
        var positions: [HubPosition] = []
        var i = parts.startIndex
        while i < parts.endIndex {
            let logText = parts[i]
            let epoch = parts[i + 1]
            let offset = parts[i + 2]
            i += 3
            guard let log = number(logText, maxDigits: 3), epoch.count <= maxEpochLength,
                !epoch.isEmpty, epoch.allSatisfy(isDigit36)
            else { return nil }
            let halves = offset.split(separator: UInt8(ascii: "-"), omittingEmptySubsequences: false)
            guard halves.count <= 2, let major = number(halves[0], maxDigits: 13) else { return nil }
            var minor: UInt64?
            if halves.count == 2 {
                guard let m = number(halves[1], maxDigits: 13) else { return nil }
                minor = m
            }
            positions.append(
                HubPosition(log: Int(log), epoch: String(decoding: epoch, as: UTF8.self), major: major, minor: minor))
        }
        return positions.isEmpty ? nil : positions
    }

    /// Throws `.invalidID` when a publisher's label takes the hub's form (it could be mistaken
    /// for a position).
    package static func checkLabel(_ label: String?) throws(MicroSSEError) {
        if let label, label.hasPrefix(reservedPrefix) {
            throw MicroSSEError(.invalidID, "an id starting with \(reservedPrefix) is reserved for the hub's own ids")
        }
    }

    /// A fresh random epoch (six base-36 digits).
    package static func randomEpoch() -> String {
        String(UInt64.random(in: 60_466_176..<2_176_782_336), radix: 36)
    }

    private static func isDigit36(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z"))
    }

    private static func number(_ digits: some Collection<UInt8>, maxDigits: Int) -> UInt64? {
        guard !digits.isEmpty, digits.count <= maxDigits, digits.allSatisfy(isDigit36) else { return nil }
        return UInt64(String(decoding: digits, as: UTF8.self), radix: 36)
    }
}

extension Frame {
    /// This event's frame with its `id:` line (the first line of every stored event's frame)
    /// replaced by `id`: a labelled event as a stream of several channels sees it.
    package func withID(_ id: String) -> Frame {
        guard let lf = bytes.firstIndex(of: 0x0A) else { return self }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count - lf + id.utf8.count + 4)
        out += "id: ".utf8
        out += id.utf8
        out += bytes[lf...]
        return Frame(bytes: out, isEvent: isEvent)
    }
}
