/// A strict parser for the `text/event-stream` format, following the WHATWG HTML standard's
/// "event stream interpretation" exactly.
///
/// It is a value type with no I/O: feed it bytes as they arrive, split anywhere (even inside a
/// UTF-8 sequence or between the CR and LF of one line end), and it returns the events those
/// bytes complete. The rules it applies:
///
/// - The stream is UTF-8; one leading byte order mark is stripped, invalid bytes decode to
///   U+FFFD.
/// - Lines end at CRLF, LF or a lone CR.
/// - A line starting with `:` is a comment. Otherwise the field name runs to the first `:` and
///   the value follows it, minus one leading space; a line without `:` is a field with an empty
///   value.
/// - `data` appends the value and an LF to the data buffer; `event` sets the event type; `id`
///   sets the last event ID unless the value contains NUL; `retry` sets the reconnection time if
///   the value is all ASCII digits; any other field is ignored.
/// - A blank line dispatches: with an empty data buffer nothing is dispatched (the event type is
///   reset); otherwise one trailing LF is removed from the data and the event is returned.
/// - An unterminated last block is never dispatched.
///
/// ```swift
/// var parser = EventStreamParser()
/// let events = parser.feed(Array("data: hi\n\n".utf8))
/// // [ParsedEvent(type: "message", data: "hi", lastEventID: "", id: nil)]
/// ```
public struct EventStreamParser: Sendable {
    /// The last-event-ID buffer; it persists across events, as in browsers.
    ///
    /// > Note: This is the buffer, updated by every `id:` line as it is read. A browser copies it
    /// > to the ID it sends on reconnection at each blank line (even one that dispatches
    /// > nothing). The two differ only inside an unfinished block.
    public private(set) var lastEventID: String = ""

    /// The last valid `retry:` value seen (milliseconds), if any.
    ///
    /// A value too large for `Int` is ignored.
    public private(set) var retry: Int?

    /// Every comment line seen (the text after `:`, with one leading space removed), in order.
    ///
    /// > Warning: This grows with every comment, heartbeats included; it is meant for tests and
    /// > short-lived parsers.
    public private(set) var comments: [String] = []

    /// Bytes of the current, unfinished line (only when a line spans several feeds).
    private var line: [UInt8] = []
    /// Whether the last byte fed was a CR, so an LF at the start of the next feed is skipped.
    private var afterCR = false
    /// Whether no line has ended yet, so the first line may start with a byte order mark.
    private var atStreamStart = true
    /// The data buffer, as UTF-8 bytes; decoded once per dispatched event.
    private var data: [UInt8] = []
    /// The event type buffer.
    private var eventType = ""
    /// The id given in the current block, if any (reported as ``ParsedEvent/id``).
    private var blockID: String?

    /// Creates a parser at the start of a stream.
    public init() {}

    /// Feeds bytes (split anywhere) and returns the events they dispatch, in order.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [ParsedEvent] {
        var events: [ParsedEvent] = []
        let done: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            feed(buffer: buffer, into: &events)
        }
        if done == nil {
            let copy = Array(bytes)
            copy.withUnsafeBufferPointer { feed(buffer: $0, into: &events) }
        }
        return events
    }

    // MARK: - Private

    private static let lf: UInt8 = 0x0A
    private static let cr: UInt8 = 0x0D
    private static let colon: UInt8 = 0x3A
    private static let space: UInt8 = 0x20

    private mutating func feed(
        buffer: UnsafeBufferPointer<UInt8>,
        into events: inout [ParsedEvent]
    ) {
        var index = 0
        if afterCR, !buffer.isEmpty {
            afterCR = false
            if buffer[0] == Self.lf { index = 1 }
        }
        var start = index
        while index < buffer.count {
            let byte = buffer[index]
            guard byte == Self.lf || byte == Self.cr else {
                index += 1
                continue
            }
            let tail = UnsafeBufferPointer(rebasing: buffer[start..<index])
            if line.isEmpty {
                processLine(tail, into: &events)
            } else {
                // Take the buffer out of `self` while it is read, then give its storage back.
                var pending: [UInt8] = []
                swap(&pending, &line)
                pending.append(contentsOf: tail)
                pending.withUnsafeBufferPointer { processLine($0, into: &events) }
                pending.removeAll(keepingCapacity: true)
                line = pending
            }
            if byte == Self.cr {
                if index + 1 < buffer.count {
                    if buffer[index + 1] == Self.lf { index += 1 }
                } else {
                    afterCR = true
                }
            }
            index += 1
            start = index
        }
        if start < buffer.count {
            line.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[start..<buffer.count]))
        }
    }

    private mutating func processLine(
        _ bytes: UnsafeBufferPointer<UInt8>,
        into events: inout [ParsedEvent]
    ) {
        var line = bytes
        if atStreamStart {
            atStreamStart = false
            // A BOM holds no CR or LF, so a leading one always lies within the first line.
            if line.count >= 3, line[0] == 0xEF, line[1] == 0xBB, line[2] == 0xBF {
                line = UnsafeBufferPointer(rebasing: line[3...])
            }
        }
        if line.isEmpty {
            dispatch(into: &events)
            return
        }
        let name: UnsafeBufferPointer<UInt8>
        var value: UnsafeBufferPointer<UInt8>
        if let colon = line.firstIndex(of: Self.colon) {
            name = UnsafeBufferPointer(rebasing: line[..<colon])
            value = UnsafeBufferPointer(rebasing: line[(colon + 1)...])
            if value.first == Self.space {
                value = UnsafeBufferPointer(rebasing: value[1...])
            }
        } else {
            name = line
            value = UnsafeBufferPointer(rebasing: line[line.count...])
        }
        if name.isEmpty {
            comments.append(String(decoding: value, as: UTF8.self))
        } else if name.elementsEqual("data".utf8) {
            data.append(contentsOf: value)
            data.append(Self.lf)
        } else if name.elementsEqual("event".utf8) {
            eventType = String(decoding: value, as: UTF8.self)
        } else if name.elementsEqual("id".utf8) {
            if !value.contains(0) {
                let id = String(decoding: value, as: UTF8.self)
                lastEventID = id
                blockID = id
            }
        } else if name.elementsEqual("retry".utf8) {
            if let milliseconds = Self.parseDigits(value) {
                retry = milliseconds
            }
        }
    }

    private mutating func dispatch(into events: inout [ParsedEvent]) {
        defer {
            data.removeAll(keepingCapacity: true)
            eventType = ""
            blockID = nil
        }
        guard !data.isEmpty else { return }
        if data.last == Self.lf { data.removeLast() }
        events.append(
            ParsedEvent(
                type: eventType.isEmpty ? "message" : eventType,
                data: String(decoding: data, as: UTF8.self),
                lastEventID: lastEventID,
                id: blockID
            )
        )
    }

    /// The value of a non-empty run of ASCII digits, or `nil` (other bytes, or too large).
    private static func parseDigits(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var result = 0
        for byte in bytes {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            let (shifted, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(Int(byte - 0x30))
            if overflow1 || overflow2 { return nil }
            result = sum
        }
        return result
    }
}

/// An event dispatched by ``EventStreamParser``, as a browser's `EventSource` would report it.
public struct ParsedEvent: Sendable, Hashable {
    /// The event type: the block's `event:` value, or `"message"` when there was none (or it was
    /// empty).
    public var type: String
    /// The data: the block's `data:` values joined with LF.
    public var data: String
    /// The parser's last event ID at dispatch (set by this block or an earlier one).
    public var lastEventID: String
    /// The id given by an `id:` line in this very block, if any (an id with NUL does not count).
    public var id: String?

    /// Creates a parsed event (for comparisons in tests and for clients).
    public init(
        type: String = "message",
        data: String,
        lastEventID: String = "",
        id: String? = nil
    ) {
        self.type = type
        self.data = data
        self.lastEventID = lastEventID
        self.id = id
    }
}
