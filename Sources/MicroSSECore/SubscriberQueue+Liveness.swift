/// The liveness side of ``SubscriberQueue``: the ticker's heartbeats and stall detection.
extension SubscriberQueue {
    /// What a periodic tick found for this subscriber.
    package enum TickAction: Sendable, Equatable {
        case none
        /// The heartbeat frame was queued. `wake` tells whether the connection is suspended and
        /// must be resumed to write it.
        case heartbeat(wake: Bool)
        /// Bytes have been pending with no progress for `stallTicks` whole ticks: the stream was
        /// failed. `wake` tells whether the connection must be resumed so the reader closes it.
        case stalled(wake: Bool)

        /// Whether the connection is suspended and must be resumed.
        package var needsWake: Bool {
            switch self {
            case .heartbeat(wake: true), .stalled(wake: true): true
            case .none, .heartbeat(wake: false), .stalled(wake: false): false
            }
        }
    }

    /// The stall watch, once per visit of a stream with bytes pending: fails the stream when
    /// bytes stayed pending without the peer reading any for `stallTicks` whole visits after
    /// they were first seen, so a stall is reported no sooner than `stallTicks` intervals
    /// (0 = never). Returns `.none` or `.stalled`.
    package mutating func tick(stallTicks: Int) -> TickAction {
        defer { progressSinceTick = false }
        // A finishing stream is watched for stalls too (its last bytes may never be read).
        guard phase != .failed else { return .none }
        if pendingBytes > 0 && !progressSinceTick {
            // The first visit that sees the stall only starts the count: the bytes may have been
            // queued just before it.
            if stalledTicks < .max { stalledTicks += 1 }
            if stallTicks > 0 && Int(stalledTicks) > stallTicks {
                dropped = true
                return .stalled(wake: fail())
            }
        } else {
            stalledTicks = 0
        }
        return .none
    }

    /// Whether the transport may write a heartbeat to this stream by itself now (see
    /// ``StreamConnection/leaveSection(idle:active:)``): suspended, nothing pending or unsent, no
    /// flush or resume on its way.
    var heartbeatable: Bool {
        phase == .open && wait == .suspended(resumeDeferred: false) && pendingBytes == 0 && !flushScheduled
    }

    /// Queues the heartbeat of a stream the heartbeat pass found idle but could not write to
    /// directly: the connection must be resumed to write it.
    package mutating func heartbeat(_ heartbeat: Frame) -> TickAction {
        guard phase == .open, pendingBytes == 0, heartbeat.bytes.count <= limit else { return .none }
        append(heartbeat)
        return .heartbeat(wake: takeWaiting())
    }
}

/// Watching a stream that may be stuck: its peer's half-close probe, its bound, and its place in
/// the ticker's set of streams with bytes pending.
extension SubscriberQueue {
    /// The peer closed its sending side: a half-closed reader or a closed socket, which TCP
    /// tells apart only when something is written (a closed socket answers with a reset).
    /// Queues `frame` once per stream when nothing is pending (pending bytes probe just as
    /// well). Returns true when the connection is suspended and must be resumed to write it.
    package mutating func probe(_ frame: Frame) -> Bool {
        guard phase == .open, !probed else { return false }
        probed = true
        guard pendingBytes == 0, frame.bytes.count <= limit else { return false }
        append(frame)
        let wake = takeWaiting()
        // Listed even though woken: a peer that may be gone is watched from the start.
        if wait == .woken { wait = .reading }
        return wake
    }

    /// Fails the stream when what it has pending (the log's backlog included) is over its bound.
    /// Returns whether it failed, and whether its connection is suspended and must be resumed.
    /// A finishing stream counts the whole log past its cursor (the log keeps it for the stream).
    package mutating func failIfOver() -> (failed: Bool, wake: Bool) {
        let held = queuedBytes + unsentBytes + (logEnd.map { Int($0 &- cursor.position) } ?? 0)
        guard phase != .failed, held > limit else { return (false, false) }
        dropped = true
        return (true, fail())
    }

    /// Whether the stream must now enter its ticker's set of streams with pending bytes: true
    /// when bytes are pending, it is not listed yet (it is then marked listed), and no resume is
    /// on its way to its reader. Checked after every call that may queue bytes and after every
    /// read, so a stream with bytes pending is listed unless its reader is about to run: a
    /// heartbeat or an event that wakes a suspended stream costs the ticker's per-second pass
    /// nothing, and only bytes the reader could not take (a peer that reads slowly or not at
    /// all) are watched for stalls.
    package mutating func takePendingListing() -> Bool {
        guard pendingBytes > 0, !listedPending, !woken else { return false }
        listedPending = true
        return true
    }

    /// A visit of the pending set: whether the stream stays listed (bytes still pending), or
    /// leaves it (it is then marked unlisted, and its next queued bytes list it again).
    package mutating func keepPendingListing() -> Bool {
        listedPending = pendingBytes > 0
        return listedPending
    }
}
