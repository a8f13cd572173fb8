import Synchronization

/// A reply that comes later, from any thread: a route returns ``TransportReply/deferred(_:)``
/// and calls ``complete(with:)`` once it knows the answer (a Redis worker, for example). The
/// transport suspends the connection meanwhile, so libmicrohttpd's thread never waits
/// (docs/DESIGN.md, deferred replies).
///
/// The state machine, one lock:
/// - `handling`: returned by the route, not yet parked by the transport;
/// - `parked`: the connection is suspended (done under this lock, so a completion's resume can
///   only follow the suspend);
/// - `ready`: completed; the reply waits for the transport to take it (at once when the route
///   completed before the transport parked, else after the resume);
/// - `delivered` or `dead` (the connection closed first): later completions are dropped, and a
///   dropped stream's `onClose` runs, so its slot and subscription are released.
package final class DeferredReply: Sendable {
    enum Phase: Equatable {
        case handling, parked, ready, delivered, dead
    }

    private struct Inner {
        var phase = Phase.handling
        var reply: TransportReply?
        var resume: (@Sendable () -> Void)?
        var transforms: [@Sendable (TransportReply) -> TransportReply] = []
    }

    private let inner = Mutex(Inner())

    package init() {}

    /// The current phase (for tests).
    var phase: Phase { inner.withLock { $0.phase } }

    /// Gives the answer; callable once from any thread (later calls are dropped). Resumes the
    /// connection when it is suspended, outside this reply's lock.
    package func complete(with reply: TransportReply) {
        var reply = reply
        if case .deferred = reply { reply = .response(.text("a deferred reply completed with another", status: 500)) }
        let (resume, dropped) = inner.withLock { s -> ((@Sendable () -> Void)?, TransportReply?) in
            switch s.phase {
            case .handling:
                s.reply = reply
                s.phase = .ready
                return (nil, nil)
            case .parked:
                s.reply = reply
                s.phase = .ready
                defer { s.resume = nil }
                return (s.resume, nil)
            case .ready, .delivered, .dead:
                return (nil, reply)
            }
        }
        if let dropped { Self.discard(dropped) }
        resume?()
    }

    /// Adds a step applied to the reply when the transport takes it (CORS headers, the access
    /// log), in the order added. Add steps before the reply is returned to the transport.
    package func transform(_ step: @escaping @Sendable (TransportReply) -> TransportReply) {
        inner.withLock { $0.transforms.append(step) }
    }

    /// The transport parks the reply: the reply itself when already completed (the connection
    /// is then not suspended), else nil after `suspend` ran under the lock; `resume` is called
    /// once, by the completion.
    func park(suspend: () -> Void, resume: @escaping @Sendable () -> Void) -> TransportReply? {
        let ready = inner.withLock { s -> Bool in
            guard s.phase == .handling else { return s.phase == .ready }
            suspend()
            s.phase = .parked
            s.resume = resume
            return false
        }
        return ready ? take() : nil
    }

    /// The completed reply with every transform applied (once; nil when not completed).
    func take() -> TransportReply? {
        let taken = inner.withLock { s -> (TransportReply, [@Sendable (TransportReply) -> TransportReply])? in
            guard s.phase == .ready, let reply = s.reply else { return nil }
            s.phase = .delivered
            s.reply = nil
            return (reply, s.transforms)
        }
        guard let (reply, steps) = taken else { return nil }
        return steps.reduce(reply) { $1($0) }
    }

    /// The connection is gone: later completions are dropped; a reply completed and not taken
    /// is discarded now. Returns whether the reply was still pending (not delivered).
    @discardableResult
    func abandon() -> Bool {
        let (wasPending, dropped) = inner.withLock { s -> (Bool, TransportReply?) in
            let pending = s.phase != .delivered && s.phase != .dead
            s.phase = .dead
            s.resume = nil
            defer { s.reply = nil }
            return (pending, s.reply)
        }
        if let dropped { Self.discard(dropped) }
        return wasPending
    }

    /// Releases what a reply that will never be sent holds (a stream's slot).
    static func discard(_ reply: TransportReply) {
        if case .stream(_, _, let onClose) = reply { onClose() }
    }
}
