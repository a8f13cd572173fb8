import MicroSSEWire

/// How a stream that asked to resume was placed.
package enum ResumeStatus: Sendable, Equatable {
    /// The request carried no `Last-Event-ID`: live events only.
    case fresh
    /// Every event after the given id was still retained and is replayed: nothing was missed.
    case exact
    /// Events may have been missed (evicted from history, published before a restart, or an id
    /// this server cannot place). The stream starts with a gap event.
    case gap(GapReason)
}

/// Why a resume could not be exact. The raw value is what clients see.
package enum GapReason: String, Sendable, Equatable {
    /// The id is older than what the history still holds (or from before a restart).
    case evicted
    /// The id is not one this server issued or can place; nothing is replayed.
    case unknown
}

/// The seam between the HTTP transport and where events live: fan-out plus bounded history
/// (go-sse's `Provider` and `Replayer`, Mercure's `Transport`). The in-memory implementation is
/// ``MemoryBroker``; a Redis-backed one can replace it without touching the transport.
///
/// Contract:
/// - Thread-safe: every method may be called from any thread at any time.
/// - ``publish(_:to:)`` gives the event a position the broker issues (see ``HubID``), stores it
///   in the channel's bounded history, and queues it for every current subscriber of the
///   channel, in publish order, before it returns the event's id (its label when it has one).
/// - ``subscribe(_:after:)`` places the id within the subscriber's channels only, queues the
///   resume prelude (a gap event when one is due, then every retained event after the id, or a
///   cursor that reads them as the stream drains: ``ReplaySource``) and registers the subscriber
///   for live events atomically: no event falls between replay and live, none arrives twice.
/// - After ``unsubscribe(_:)`` returns, the subscriber is queued nothing more.
/// - After ``shutdown()``, `publish` throws `.unavailable` and `subscribe` registers nothing.
/// - A broker whose calls wait on I/O says so with ``isAsynchronous``; the router then uses the
///   completion-based forms, which return at once and call `completion` exactly once, from any
///   thread (the subscriber is registered for live events before `subscribe` returns; the
///   completion comes once the resume prelude is queued). The defaults run the synchronous
///   forms inline.
package protocol EventBroker: Sendable {
    /// Connects to whatever backs the broker; called once by ``Server/start()`` before the port
    /// is bound. Throws `.unavailable` (or `.startFailed`) when that is impossible.
    func start() throws(MicroSSEError)
    func publish(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> String
    func subscribe(_ subscriber: Subscriber, after lastEventID: String?) -> ResumeStatus
    func unsubscribe(_ subscriber: Subscriber)
    func shutdown()
    /// Channels with history or subscribers.
    var channelCount: Int { get }
    /// Why the broker cannot serve right now (e.g. its Redis is unreachable), or nil when it can.
    var unavailableReason: String? { get }
    /// Whether `publish` and a resuming `subscribe` wait on I/O (then call the completion forms
    /// from the transport's threads).
    var isAsynchronous: Bool { get }
    /// How the broker's reader of a shared log is doing (nil: the broker has none, as in memory).
    var readerHealth: ReaderHealth? { get }
    func publish(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<String, MicroSSEError>) -> Void)
    func subscribe(
        _ subscriber: Subscriber, after lastEventID: String?, completion: @escaping @Sendable (ResumeStatus) -> Void)
    /// ``publish(_:to:)`` with what the broker knows of the event's durability.
    func publishReceipt(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> PublishReceipt
    /// ``publish(_:to:completion:)`` with what the broker knows of the event's durability.
    func publishReceipt(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<PublishReceipt, MicroSSEError>) -> Void)
}

/// An acknowledged publish: its id, and how many replicas of the broker's store confirmed it
/// before the acknowledgement.
package struct PublishReceipt: Sendable, Equatable {
    package var id: String
    /// Replicas that confirmed the event; 0 when the store's primary alone holds it (its
    /// replicas, if any, get it asynchronously); nil when the broker did not ask (no replicas to
    /// speak of).
    package var replicas: Int?

    package init(id: String, replicas: Int? = nil) {
        self.id = id
        self.replicas = replicas
    }
}

extension EventBroker {
    package func start() throws(MicroSSEError) {}
    package var unavailableReason: String? { nil }
    package var isAsynchronous: Bool { false }
    package var readerHealth: ReaderHealth? { nil }

    package func publish(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<String, MicroSSEError>) -> Void
    ) {
        do throws(MicroSSEError) {
            completion(.success(try publish(event, to: channel)))
        } catch {
            completion(.failure(error))
        }
    }

    package func subscribe(
        _ subscriber: Subscriber, after lastEventID: String?, completion: @escaping @Sendable (ResumeStatus) -> Void
    ) {
        completion(subscribe(subscriber, after: lastEventID))
    }

    package func publishReceipt(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> PublishReceipt {
        PublishReceipt(id: try publish(event, to: channel))
    }

    package func publishReceipt(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<PublishReceipt, MicroSSEError>) -> Void
    ) {
        publish(event, to: channel) { result in completion(result.map { PublishReceipt(id: $0) }) }
    }
}

extension ResumeStatus {
    /// The typed first event of a stream that may have missed events (its wire form is
    /// ``ControlEvents/gap(lastEventID:reason:)``).
    package static func gapFrame(lastEventID: String, reason: GapReason) -> Frame {
        Frame(
            bytes: EventEncoder.encode(ControlEvents.gap(lastEventID: lastEventID, reason: reason.rawValue)),
            isEvent: true)
    }
}

extension Subscriber {
    /// Queues a resume: the gap event (for `gap`, or `evicted` when the replay had to be cut),
    /// then `replay` in order — all of it when it fits the stream's free bytes beside the gap
    /// event, else only its newest frames that do. A replay larger than the stream's bound would
    /// otherwise fail the stream on arrival, and then every reconnect from the same id. The Redis
    /// broker resumes through here (the in-memory one reads its replay through a cursor). Returns
    /// the gap reported, nil when nothing was missed.
    @discardableResult
    package func enqueueResume(_ replay: [Frame], lastEventID: String, gap: GapReason?) -> GapReason? {
        let evicted = ResumeStatus.gapFrame(lastEventID: lastEventID, reason: .evicted)
        let room = freeBytes - evicted.bytes.count
        var first = replay.count
        var total = 0
        while first > 0 && total + replay[first - 1].bytes.count <= room {
            total += replay[first - 1].bytes.count
            first -= 1
        }
        let reason = first > 0 ? GapReason.evicted : gap
        if let reason {
            enqueue(reason == .evicted ? evicted : ResumeStatus.gapFrame(lastEventID: lastEventID, reason: reason))
        }
        for frame in replay[first...] { enqueue(frame) }
        return reason
    }
}

/// What a broker that follows a shared log (Redis's global stream) reports about its reader.
package struct ReaderHealth: Sendable, Equatable {
    /// Times the reader found entries trimmed before it read them (its open streams were sent the
    /// gap signal).
    package var lostPlace: Int
    /// How far behind the log's newest entry the reader was after its last read, in milliseconds.
    package var lagMilliseconds: Int

    package init(lostPlace: Int, lagMilliseconds: Int) {
        self.lostPlace = lostPlace
        self.lagMilliseconds = lagMilliseconds
    }
}

/// Makes the broker a server uses instead of the in-memory one (the Redis module provides one).
package protocol BrokerFactory: Sendable {
    /// A broker keeping `historyCount` events and `historyBytes` bytes per channel, none older
    /// than `historyTTLSeconds` (0 = no age limit); `log` takes warnings.
    func makeBroker(
        historyCount: Int, historyBytes: Int, historyTTLSeconds: Int, log: @escaping @Sendable (String) -> Void
    ) -> any EventBroker
}
