/// Writes events, comments and `retry:` blocks in the `text/event-stream` format (UTF-8).
///
/// Every line is written as `NAME: VALUE\n`, with exactly one space after the colon so a value
/// that starts with a space survives. A line whose value is empty is written as `NAME:\n`
/// (no trailing space); clients read both forms the same way. Each block ends with a blank line.
///
/// Multi-line text (an event's payload, a comment) is split on CRLF, LF and lone CR and written
/// as one line per piece, so nothing in it can forge a field or end the block early. An empty
/// payload is one `data:` line, which makes clients dispatch an event with empty data.
public enum EventEncoder {
    /// Returns the bytes of one event block.
    ///
    /// The block is `id: X\n` (when set), `event: X\n` (when set and not empty), `retry: N\n`
    /// (when set), then one `data: LINE\n` per payload line (`data:\n` for an empty line), then
    /// `\n`.
    public static func encode(_ event: Event) -> [UInt8] {
        var buffer: [UInt8] = []
        encode(event, into: &buffer)
        return buffer
    }

    /// Appends the bytes of one event block to `buffer` (see ``encode(_:)``).
    public static func encode(_ event: Event, into buffer: inout [UInt8]) {
        // An estimate (fields, separators, one "data: " per line), not a bound. Grow
        // geometrically: exact reservations would make repeated appends quadratic.
        let needed = buffer.count + event.data.utf8.count + 64
        if buffer.capacity < needed {
            buffer.reserveCapacity(Swift.max(needed, buffer.capacity * 2))
        }
        if let id = event.id {
            appendField(Self.idName, value: id.utf8, into: &buffer)
        }
        if let name = event.event, !name.isEmpty {
            appendField(Self.eventName, value: name.utf8, into: &buffer)
        }
        if let retry = event.retry {
            appendField(Self.retryName, value: String(retry).utf8, into: &buffer)
        }
        appendLines(Self.dataName, of: event.data, into: &buffer)
        buffer.append(lf)
    }

    /// Returns a comment block: one `: LINE\n` per line of `text` (split like a payload), then
    /// `\n`.
    ///
    /// An empty `text` gives `:\n\n`, the usual heartbeat.
    public static func comment(_ text: String) -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(text.utf8.count + 8)
        appendLines([], of: text, into: &buffer)
        buffer.append(lf)
        return buffer
    }

    /// Returns a standalone `retry: N\n\n` block that sets the client's reconnection delay.
    ///
    /// > Warning: `milliseconds` must not be negative; a negative value is a programming error
    /// > and traps. Validate input from outside (configuration, C callers) first.
    public static func retry(milliseconds: Int) -> [UInt8] {
        precondition(milliseconds >= 0, "retry must be zero or more milliseconds")
        var buffer: [UInt8] = []
        appendField(Self.retryName, value: String(milliseconds).utf8, into: &buffer)
        buffer.append(lf)
        return buffer
    }

    // MARK: - Private

    private static let lf: UInt8 = 0x0A
    private static let cr: UInt8 = 0x0D
    private static let colon: UInt8 = 0x3A
    private static let space: UInt8 = 0x20

    private static let idName: [UInt8] = Array("id".utf8)
    private static let eventName: [UInt8] = Array("event".utf8)
    private static let retryName: [UInt8] = Array("retry".utf8)
    private static let dataName: [UInt8] = Array("data".utf8)

    /// Appends `NAME: VALUE\n`, or `NAME:\n` when the value is empty. `value` has no CR or LF.
    private static func appendField(
        _ name: [UInt8],
        value: some Collection<UInt8>,
        into buffer: inout [UInt8]
    ) {
        buffer.append(contentsOf: name)
        buffer.append(colon)
        if !value.isEmpty {
            buffer.append(space)
            buffer.append(contentsOf: value)
        }
        buffer.append(lf)
    }

    /// Appends one `NAME: LINE\n` per line of `text`, splitting on CRLF, LF and lone CR.
    ///
    /// Empty text, and an empty piece after a final line break, each give one `NAME:\n` line.
    private static func appendLines(_ name: [UInt8], of text: String, into buffer: inout [UInt8]) {
        let done: Void? = text.utf8.withContiguousStorageIfAvailable { bytes in
            appendLines(name, of: bytes, into: &buffer)
        }
        if done == nil {
            let bytes = Array(text.utf8)
            bytes.withUnsafeBufferPointer { appendLines(name, of: $0, into: &buffer) }
        }
    }

    private static func appendLines(
        _ name: [UInt8],
        of bytes: UnsafeBufferPointer<UInt8>,
        into buffer: inout [UInt8]
    ) {
        var start = 0
        while true {
            let end = lineBreak(in: bytes, from: start)
            appendField(name, value: UnsafeBufferPointer(rebasing: bytes[start..<end]), into: &buffer)
            guard end < bytes.count else { return }
            start = end + 1
            if bytes[end] == cr, start < bytes.count, bytes[start] == lf { start += 1 }
        }
    }

    /// The index of the first CR or LF in `bytes` at or after `start`, or `bytes.count`. Looks at
    /// eight bytes per step while none of them is one (a payload of kilobytes is scanned once per
    /// publish, before it is shared by every subscriber).
    private static func lineBreak(in bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var i = start
        if let base = bytes.baseAddress {
            let raw = UnsafeRawPointer(base)
            while i + 8 <= bytes.count {
                let word = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                if holds(lf, in: word) || holds(cr, in: word) { break }
                i += 8
            }
        }
        while i < bytes.count && bytes[i] != lf && bytes[i] != cr { i += 1 }
        return i
    }

    /// Whether one of the eight bytes of `word` is `byte` (the classic zero-byte test on
    /// `word ^ byte × 0x0101…`: exact, no false positives, for the one-bit answer).
    private static func holds(_ byte: UInt8, in word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let x = word ^ (ones &* UInt64(byte))
        return (x &- ones) & ~x & 0x8080_8080_8080_8080 != 0
    }
}
