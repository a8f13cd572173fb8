import MicroSSEWire

/// One subscriber's pending output and its suspend/resume handshake, as a state machine whose
/// methods return what the caller must do (Hummingbird's connection state machine style).
///
/// The transport keeps it behind a lock; publishers call ``enqueue(_:)``, the transport's
/// content reader calls ``read(into:)`` on libmicrohttpd's thread.
package struct SubscriberQueue: Sendable {
    package enum Phase: Sendable, Equatable {
        /// Streaming.
        case open
        /// Ending gracefully: what is queued is written, then the stream ends cleanly.
        case finishing
        /// Ending abruptly (over the byte bound, stalled, or closed by the application):
        /// pending bytes are dropped and the connection is closed.
        case failed
    }

    /// What ``enqueue(_:)`` asks the caller to do.
    package enum EnqueueAction: Sendable, Equatable {
        /// Nothing: a reader will pick the frame up.
        case none
        /// The connection is suspended: resume it.
        case wake
        /// The frame did not fit in the byte bound: the queue was dropped and the stream failed.
        /// `wake` tells whether the connection is suspended and must be resumed to close.
        case overflow(wake: Bool)
        /// The stream is ending or ended: the frame was not queued.
        case closed
    }

    /// What ``read(into:)`` asks the content reader to return to libmicrohttpd.
    package enum ReadAction: Sendable, Equatable {
        /// `bytes` were written (and `events` whole events finished).
        case wrote(bytes: Int, events: Int)
        /// Nothing is queued: suspend the connection (the queue is now marked waiting).
        case suspend
        /// End the stream cleanly (final zero-length chunk).
        case end
        /// Close the connection at once.
        case abort
    }

    /// The most bytes this subscriber may have pending; more fails the stream.
    package let limit: Int
    private var frames: [Frame] = []
    private var head = 0
    private var offset = 0
    /// Bytes queued and not yet handed to the socket.
    package private(set) var pendingBytes = 0
    /// True while the connection is suspended waiting for data (set only by ``read(into:)``).
    package private(set) var waiting = false
    package private(set) var phase = Phase.open
    /// Whether the stream was failed for falling behind (over the bound, or stalled).
    package private(set) var dropped = false
    private var enqueuedSinceTick = false
    private var progressSinceTick = false
    private var stalledTicks = 0
    /// The write region the content reader was last handed (address and size), for
    /// ``visitIdle()``. Recorded on every read; the owner of the region is the transport.
    private var bufferAddress: UInt = 0
    private var bufferCount = 0
    /// Idle-release state of the current suspension: seen suspended by one release pass
    /// (`idleSeen`), region already given back (`idleReleased`). Both cleared on every suspend.
    private var idleSeen = false
    private var idleReleased = false
    /// True while the stream is in the release pass's list of streams to visit (see ``takeListing()``).
    private var listed = false
    /// The pages last given back, while no write may have touched them since (a heartbeat or a
    /// small event writes only the region's first, partial page): releasing them again is skipped.
    package private(set) var untouchedRelease: (address: UInt, count: Int)?
    /// Whether a liveness probe was queued after the peer closed its sending side.
    private var probed = false
    /// True while the stream is in its ticker's set of streams with pending bytes
    /// (``PendingStreams``; see ``takePendingListing()``).
    private var listedPending = false
    /// True from an answer that asked for a resume until the next read: the reader is about to
    /// take what is pending, so the stream need not be listed for it (see ``takePendingListing()``).
    private var woken = false

    package init(limit: Int) {
        self.limit = limit
    }

    package mutating func enqueue(_ frame: Frame) -> EnqueueAction {
        guard phase == .open else { return .closed }
        guard frame.bytes.count <= limit - pendingBytes else {
            dropped = true
            return .overflow(wake: fail())
        }
        frames.append(frame)
        pendingBytes += frame.bytes.count
        enqueuedSinceTick = true
        return takeWaiting() ? .wake : .none
    }

    /// Copies up to `out.count` queued bytes, in order, into `out` (several frames per call): what
    /// the transport's content reader calls with libmicrohttpd's buffer. No allocation, no retain
    /// of the frames it copies.
    package mutating func read(into out: UnsafeMutableRawBufferPointer) -> ReadAction {
        if phase == .failed { return .abort }
        let max = out.count
        let address = UInt(bitPattern: out.baseAddress)
        if untouchedRelease != nil && (address != bufferAddress || max != bufferCount) {
            untouchedRelease = nil
        }
        bufferAddress = address
        bufferCount = max
        woken = false
        var written = 0
        var events = 0
        while head < frames.count && written < max {
            let (n, total, isEvent) = frames[head].bytes.withUnsafeBytes { bytes in
                let n = Swift.min(bytes.count - offset, max - written)
                if n > 0 {
                    (out.baseAddress! + written).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
                }
                return (n, bytes.count, frames[head].isEvent)
            }
            written += n
            offset += n
            if offset == total {
                if isEvent { events += 1 }
                head += 1
                offset = 0
            }
        }
        pendingBytes -= written
        // libmicrohttpd appends the chunk's CRLF after the data: count a few bytes more.
        if let released = untouchedRelease, written > 0, address &+ UInt(written + 16) > released.address {
            untouchedRelease = nil
        }
        if head == frames.count {
            frames.removeAll(keepingCapacity: frames.capacity <= 64)
            head = 0
        } else if head >= 32 && head * 2 >= frames.count {
            frames.removeFirst(head)
            head = 0
        }
        if written > 0 {
            progressSinceTick = true
            return .wrote(bytes: written, events: events)
        }
        if phase == .finishing { return .end }
        waiting = true
        idleSeen = false
        idleReleased = false
        return .suspend
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

    /// The peer closed its sending side: a half-closed reader or a closed socket, which TCP
    /// tells apart only when something is written (a closed socket answers with a reset).
    /// Queues `frame` once per stream when nothing is pending (pending bytes probe just as
    /// well). Returns true when the connection is suspended and must be resumed to write it.
    package mutating func probe(_ frame: Frame) -> Bool {
        guard phase == .open, !probed else { return false }
        probed = true
        guard pendingBytes == 0, frame.bytes.count <= limit else { return false }
        frames.append(frame)
        pendingBytes += frame.bytes.count
        let wake = takeWaiting()
        // Listed even though woken: a peer that may be gone is watched from the start.
        woken = false
        return wake
    }

    /// Copies up to `max` queued bytes, in order, through one call of `write` (tests, tools).
    package mutating func read(max: Int, write: (ArraySlice<UInt8>) -> Void) -> ReadAction {
        var buffer = [UInt8](repeating: 0, count: Swift.max(0, max))
        let action = buffer.withUnsafeMutableBytes { read(into: $0) }
        if case .wrote(let n, _) = action { write(buffer[..<n]) }
        return action
    }

    /// Starts a graceful end. Returns true when the connection is suspended and must be resumed.
    package mutating func finish() -> Bool {
        guard phase == .open else { return false }
        phase = .finishing
        return takeWaiting()
    }

    /// Drops everything queued and fails the stream. Returns true when the connection is
    /// suspended and must be resumed so the reader can close it.
    @discardableResult
    package mutating func fail() -> Bool {
        frames = []
        head = 0
        offset = 0
        pendingBytes = 0
        phase = .failed
        return takeWaiting()
    }

    /// What a periodic tick found for this subscriber.
    package enum TickAction: Sendable, Equatable {
        case none
        /// Nothing was queued since the last tick: the heartbeat frame was queued.
        /// `wake` tells whether the connection is suspended and must be resumed to write it.
        case heartbeat(wake: Bool)
        /// Bytes have been pending with no progress for `stallTicks` whole ticks: the stream was
        /// failed. `wake` tells whether the connection must be resumed so the reader closes it.
        case stalled(wake: Bool)
        /// The heartbeat was written to the suspended connection's socket directly; it stays
        /// suspended.
        case heartbeatWritten
        /// Writing the heartbeat directly failed (the peer is gone): the stream was failed and
        /// its suspended connection must be resumed so the reader closes it.
        case peerGone

        /// Whether the connection is suspended and must be resumed.
        package var needsWake: Bool {
            switch self {
            case .heartbeat(wake: true), .stalled(wake: true), .peerGone: true
            case .none, .heartbeat(wake: false), .stalled(wake: false), .heartbeatWritten: false
            }
        }
    }

    /// Called once per tick. Queues `heartbeat` on a stream that had nothing queued since the
    /// previous tick and nothing pending, so an idle stream gets one heartbeat per tick (the
    /// heartbeat itself does not count as activity). Fails the stream when bytes stayed pending
    /// without the peer reading any for `stallTicks` whole ticks after they were first seen, so
    /// a stall is reported no sooner than `stallTicks` tick intervals (0 = never).
    ///
    /// A heartbeat due on a suspended stream is first offered to `writeSuspended`, which may
    /// write it to the socket without resuming the connection (then nothing is queued); when it
    /// cannot, the heartbeat is queued and the connection resumed as for any frame.
    package mutating func tick(
        stallTicks: Int, heartbeat: Frame?, writeSuspended: ([UInt8]) -> SuspendedWrite = { _ in .unavailable }
    ) -> TickAction {
        defer {
            enqueuedSinceTick = false
            progressSinceTick = false
        }
        guard phase == .open else { return .none }
        if pendingBytes > 0 && !progressSinceTick {
            // The first tick that sees the stall only starts the count: the bytes may have been
            // queued just before it.
            stalledTicks += 1
            if stallTicks > 0 && stalledTicks > stallTicks {
                dropped = true
                return .stalled(wake: fail())
            }
        } else {
            stalledTicks = 0
        }
        guard let heartbeat, !enqueuedSinceTick, pendingBytes == 0 else { return .none }
        guard heartbeat.bytes.count <= limit else { return .none }
        if waiting {
            switch writeSuspended(heartbeat.bytes) {
            case .written: return .heartbeatWritten
            case .failed:
                _ = fail()
                return .peerGone
            case .unavailable: break
            }
        }
        frames.append(heartbeat)
        pendingBytes += heartbeat.bytes.count
        return .heartbeat(wake: takeWaiting())
    }

    /// Bytes that can still be queued before the stream is over its bound.
    package var freeBytes: Int { phase == .open ? limit - pendingBytes : 0 }

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

    private mutating func takeWaiting() -> Bool {
        let was = waiting
        waiting = false
        if was { woken = true }
        return was
    }
}
