import MicroSSECore
import MicroSSETransport
import MicroSSEWire

/// One connected stream, handed to stream routes and to connect/disconnect callbacks.
///
/// Thread-safe: any thread may call ``send(_:)`` at any time.
public final class Client: Sendable, Hashable {
    /// A process-unique number for this stream.
    public var id: UInt64 { subscriber.id }
    /// The request that opened the stream.
    public let request: Request
    /// The channels this stream receives (empty for a private stream).
    public var channels: [String] { subscriber.channels.map(\.rawValue) }

    package let subscriber: Subscriber
    /// The hub that serves the stream, told when its connection is gone. Weak: a client the
    /// embedder keeps must not keep the server's hub (its broker, history, callbacks) alive.
    weak let hub: Hub?
    /// ``ServerConfiguration/maxPublishBytes``: a private send obeys the publish's bound.
    private let maxEventBytes: Int

    init(request: Request, subscriber: Subscriber, hub: Hub) {
        self.request = request
        self.subscriber = subscriber
        self.hub = hub
        self.maxEventBytes = hub.configuration.maxPublishBytes
    }

    /// Sends an event to this client alone, under the rules of a publish. Returns false when the
    /// stream is closed or ending, or when the event did not fit the client's buffer (the client
    /// is then disconnected).
    ///
    /// - Throws: `.payloadTooLarge` when the data is larger than
    ///   ``ServerConfiguration/maxPublishBytes``; `.invalidEventName` for a reserved name
    ///   (`microsse.gap`, `microsse.expired`, `error`, `open`).
    @discardableResult
    public func send(_ event: Event) throws(MicroSSEError) -> Bool {
        try event.checkSendable(maxBytes: maxEventBytes)
        return sendControl(event)
    }

    /// Sends one of MicroSSE's own events (``send(_:)`` without its checks).
    func sendControl(_ event: Event) -> Bool {
        enqueue(Frame(bytes: EventEncoder.encode(event), isEvent: true))
    }

    /// Sends a comment (`: text`) to this client alone; see ``send(_:)`` for the result.
    @discardableResult
    public func send(comment: String) -> Bool {
        enqueue(Frame(bytes: EventEncoder.comment(comment), isEvent: false))
    }

    /// Ends the stream cleanly once what is queued is written.
    public func close() {
        subscriber.finish()
    }

    /// Whether the stream is still open.
    public var isOpen: Bool { subscriber.isOpen }

    private func enqueue(_ frame: Frame) -> Bool {
        switch subscriber.enqueue(frame) {
        case .none, .wake: return true
        case .overflow, .closed: return false
        }
    }

    public static func == (a: Client, b: Client) -> Bool { a === b }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

/// What a request asks for, as shown to the authorizer.
public enum Access: Sendable, Equatable {
    /// A stream of these channels (`GET /events/...`).
    case subscribe(channels: [String])
    /// Publishing to a channel (`POST /events/{channel}`).
    case publish(channel: String)
    /// A custom stream route.
    case stream(path: String)
    /// A custom plain route, `/stats` or `/metrics`.
    case route(path: String)
}

/// An authorizer's answer. It runs before any byte of a response is sent.
public enum Authorization: Sendable, Equatable {
    /// Let the request proceed.
    case allow
    /// Refuse with this status (401 or 403 are typical) and a one-line reason.
    case deny(status: Int, reason: String)

    /// `401 unauthorized`.
    public static let unauthorized = Authorization.deny(status: 401, reason: "unauthorized")
    /// `403 forbidden`.
    public static let forbidden = Authorization.deny(status: 403, reason: "forbidden")
}

/// Counters since the server started.
public struct Statistics: Sendable, Equatable {
    /// Streams open now.
    public var clients: Int
    /// Channels with history or subscribers.
    public var channels: Int
    /// Events published to channels.
    public var published: Int
    /// Events written to sockets (one per subscriber per event).
    public var delivered: Int
    /// Stream bytes written to sockets.
    public var bytes: Int
    /// Streams disconnected for falling behind (over their buffer bound or stalled).
    public var drops: Int
    /// Streams ended, for any reason.
    public var disconnects: Int
}

extension Event {
    /// What a publisher or a private send may send: data within `maxBytes`
    /// (``ServerConfiguration/maxPublishBytes``), and no reserved event name (MicroSSE's own
    /// control events, which could make clients believe events were lost or end their streams,
    /// and `error` and `open`, which an `EventSource` hands to its own handlers).
    func checkSendable(maxBytes: Int) throws(MicroSSEError) {
        guard data.utf8.count <= maxBytes else {
            throw MicroSSEError(.payloadTooLarge, "event data is larger than \(maxBytes) bytes")
        }
        if let name = event, let reason = ControlEvents.reservedReason(name) {
            throw MicroSSEError(.invalidEventName, reason)
        }
    }
}
