/// The liveness side of ``SubscriberQueue``: the ticker's heartbeats and stall detection, and the
/// release pass that gives an idle stream's buffer pages back.
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

    /// Whether the ticker may write a heartbeat to this stream's socket by itself now (see
    /// ``HeartbeatSlots``): suspended, nothing pending or unsent, no flush or resume on its way.
    var heartbeatable: Bool {
        phase == .open && waiting && pendingBytes == 0 && !flushScheduled && !resumeDeferred
    }

    /// Queues the heartbeat of a stream the heartbeat pass found idle but could not write to
    /// directly (see ``HeartbeatSlots``): the connection must be resumed to write it.
    package mutating func heartbeat(_ heartbeat: Frame) -> TickAction {
        guard phase == .open, pendingBytes == 0, heartbeat.bytes.count <= limit else { return .none }
        append(heartbeat)
        return .heartbeat(wake: takeWaiting())
    }

    /// What a release pass does with a stream it visits (see ``visitIdle()``).
    package enum IdleVisit: Sendable, Equatable {
        /// Not suspended, or already given back: drop it from the list (its next suspend lists it again).
        case drop
        /// Suspended since before this visit: keep it listed and visit it again next pass.
        case keep
        /// Suspended since the previous visit: give back the region (address, size) the reader
        /// was last handed, then drop the stream from the list.
        case release(address: UInt, count: Int)
    }

    /// Whether the suspend that ``read(into:)`` just answered must list the stream for the
    /// release pass: true once per stream until a pass drops it, so a busy stream is listed at
    /// most once per pass, and an idle stream whose region was given back costs the pass nothing.
    /// A stream whose pages given back are still untouched (a heartbeat or a small event wrote
    /// only the region's first, partial page) is not listed at all: a pass would find nothing to
    /// give back. Its emptied frame array is freed here instead.
    package mutating func takeListing() -> Bool {
        guard waiting, !listed else { return false }
        if untouchedRelease != nil {
            idleReleased = true
            if frames.isEmpty && frames.capacity > 0 { frames = [] }
            return false
        }
        listed = true
        return true
    }

    /// A release pass's visit. The first visit during a suspension only marks it; the next gives
    /// the region back, so it has stayed suspended for at least the pass interval. Call under the
    /// same lock as ``read(into:)`` and release the region before releasing the lock: while
    /// `waiting` holds, no reader runs and no resume has been asked for, so nothing writes or
    /// reads the region (and a closed stream is never waiting: its region is never touched).
    /// Records the pages a release gave back (see ``untouchedRelease``).
    package mutating func noteReleased(address: UInt, count: Int) {
        untouchedRelease = (address, count)
    }

    package mutating func visitIdle() -> IdleVisit {
        guard waiting, !idleReleased, bufferAddress != 0, bufferCount > 0 else {
            listed = false
            return .drop
        }
        guard idleSeen else {
            idleSeen = true
            return .keep
        }
        idleReleased = true
        listed = false
        // Nothing is queued while waiting: drop the frame array's spare capacity too.
        if frames.isEmpty && frames.capacity > 0 { frames = [] }
        return .release(address: bufferAddress, count: bufferCount)
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
        woken = false
        return wake
    }

    /// Fails the stream when what it has pending (the log's backlog included) is over its bound.
    /// Returns whether it failed, and whether its connection is suspended and must be resumed.
    /// A finishing stream counts the whole log past its cursor (the log keeps it for the stream).
    package mutating func failIfOver() -> (failed: Bool, wake: Bool) {
        let held = queuedBytes + unsent.count + (logEnd.map { Int($0 &- cursor.position) } ?? 0)
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
