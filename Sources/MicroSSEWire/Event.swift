/// A validated Server-Sent Events event: an `Event` that exists is always safe to write.
///
/// Validation happens once, at construction, so the encoder never has to alter or reject
/// anything:
///
/// - `event` must not contain CR, LF or NUL (``MicroSSEError/Code/invalidEventName``).
/// - `id` must not contain CR, LF or NUL (``MicroSSEError/Code/invalidID``).
/// - `retry` must not be negative (``MicroSSEError/Code/invalidArgument``).
/// - `data` may hold anything. ``EventEncoder`` writes one `data:` line per payload line, so a
///   payload can neither forge a field nor end the event early.
///
/// ```swift
/// let event = try Event(data: "hello\nworld", event: "greeting", id: "42")
/// let bytes = EventEncoder.encode(event)
/// // "id: 42\nevent: greeting\ndata: hello\ndata: world\n\n"
/// ```
///
/// > Note: SSE has no way to carry a CR on the wire. A payload's line breaks (CRLF, LF or a
/// > lone CR) all reach the client as LF, exactly as a browser's `EventSource` reports them.
public struct Event: Sendable, Hashable {
    /// The payload: any text, including CR and LF (written as one `data:` line per line).
    public let data: String
    /// The `event:` field (the type a browser dispatches), or `nil` for the default `message`.
    ///
    /// An empty name is accepted and means `message` too, so the encoder writes no `event:` line
    /// for it. Publishing (to a channel, by any API) refuses more names than an `Event` does:
    /// MicroSSE's own `microsse.gap` and `microsse.expired`, and `error` and `open`, which a
    /// browser's `EventSource` hands to its own `onerror` and `onopen` handlers.
    public let event: String?
    /// The `id:` field, or `nil` to write none.
    ///
    /// An empty id is meaningful: it is written as `id:` and resets the client's last event ID.
    public let id: String?
    /// The `retry:` field: the client's reconnection delay in milliseconds, or `nil` to write none.
    public let retry: Int?

    /// Creates an event, validating every field.
    ///
    /// - Throws: ``MicroSSEError`` with code ``MicroSSEError/Code/invalidEventName`` when `event`
    ///   contains CR, LF or NUL, ``MicroSSEError/Code/invalidID`` when `id` contains CR, LF or NUL,
    ///   and ``MicroSSEError/Code/invalidArgument`` when `retry` is negative.
    public init(
        data: String,
        event: String? = nil,
        id: String? = nil,
        retry: Int? = nil
    ) throws(MicroSSEError) {
        if let event { try Self.validateEventName(event) }
        if let id { try Self.validateID(id) }
        if let retry { try Self.validateRetry(retry) }
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry
    }

    /// Creates an event whose payload is given as UTF-8 bytes, validating every field.
    ///
    /// - Throws: ``MicroSSEError`` with code ``MicroSSEError/Code/invalidUTF8`` when `utf8Data`
    ///   is not valid UTF-8 (bytes are never replaced or dropped), otherwise as
    ///   ``init(data:event:id:retry:)``.
    public init(
        utf8Data: some Collection<UInt8>,
        event: String? = nil,
        id: String? = nil,
        retry: Int? = nil
    ) throws(MicroSSEError) {
        guard let data = String(validating: utf8Data, as: UTF8.self) else {
            throw MicroSSEError(.invalidUTF8, "event data is not valid UTF-8")
        }
        try self.init(data: data, event: event, id: id, retry: retry)
    }

    /// Returns a copy of this event with another id (validated like the initializer's).
    ///
    /// - Throws: ``MicroSSEError`` with code ``MicroSSEError/Code/invalidID`` when `id` contains
    ///   CR, LF or NUL.
    public func withID(_ id: String) throws(MicroSSEError) -> Event {
        try Self.validateID(id)
        return Event(unchecked: data, event: event, id: id, retry: retry)
    }

    /// Creates an event from fields that are already known to be valid.
    private init(unchecked data: String, event: String?, id: String?, retry: Int?) {
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry
    }
}

extension Event {
    /// Checks that `id` can be written as an `id:` field: no CR, LF or NUL.
    ///
    /// A client ignores an id containing NUL, and CR or LF would end the field early, so such an
    /// id is rejected rather than altered. The empty id is valid.
    ///
    /// - Throws: ``MicroSSEError`` with code ``MicroSSEError/Code/invalidID``.
    public static func validateID(_ id: String) throws(MicroSSEError) {
        for byte in id.utf8 {
            switch byte {
            case 0x0D:
                throw MicroSSEError(.invalidID, "event id must not contain CR")
            case 0x0A:
                throw MicroSSEError(.invalidID, "event id must not contain LF")
            case 0x00:
                throw MicroSSEError(.invalidID, "event id must not contain NUL")
            default:
                continue
            }
        }
    }

    /// Checks that `name` can be written as an `event:` field: no CR, LF or NUL.
    ///
    /// CR or LF would end the field early, and a NUL is what a C caller or a server that
    /// cuts strings at NUL would read as the end of the name, so such a name is rejected rather
    /// than altered. The empty name is valid and means `message`, like no name at all.
    ///
    /// - Throws: ``MicroSSEError`` with code ``MicroSSEError/Code/invalidEventName``.
    public static func validateEventName(_ name: String) throws(MicroSSEError) {
        for byte in name.utf8 {
            switch byte {
            case 0x0D:
                throw MicroSSEError(.invalidEventName, "event name must not contain CR")
            case 0x0A:
                throw MicroSSEError(.invalidEventName, "event name must not contain LF")
            case 0x00:
                throw MicroSSEError(.invalidEventName, "event name must not contain NUL")
            default:
                continue
            }
        }
    }

    /// Checks that `milliseconds` can be written as a `retry:` field: not negative.
    private static func validateRetry(_ milliseconds: Int) throws(MicroSSEError) {
        guard milliseconds >= 0 else {
            throw MicroSSEError(
                .invalidArgument,
                "retry must be zero or more milliseconds, got \(milliseconds)"
            )
        }
    }
}
