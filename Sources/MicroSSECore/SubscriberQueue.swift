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
    /// A frame queued for this subscriber alone, with the log position it was queued at: it is
    /// written once the log has been read up to there, so it keeps its place among the channel's
    /// events (a private event sent after a publish follows it).
    struct Queued {
        let frame: Frame
        let at: UInt64
    }
    var frames: [Queued] = []
    var head = 0
    var offset = 0
    /// Bytes of `frames` not yet handed to the socket.
    package internal(set) var queuedBytes = 0
    /// The log this stream reads (its channel's, or its channel set's), and where it is in it;
    /// nil when every frame is queued here (a private stream, or a resume not yet past its replay).
    package private(set) var log: ChannelLog? {
        didSet { logRef = log.map { Unmanaged.passUnretained($0) } }
    }
    /// `log` used without a retain and release per use (`log` keeps it alive).
    var logRef: Unmanaged<ChannelLog>?
    package internal(set) var cursor = LogCursor()
    /// While finishing: the log's end when the stream started to finish (nothing after it is sent).
    var finishAt = UInt64.max
    /// The write region the content reader was last handed (address and size), for
    /// ``visitIdle()``. Recorded on every read; the owner of the region is the transport.
    var bufferAddress: UInt = 0
    var bufferCount = 0
    /// The rest of a resume's replay, read a chunk at a time as the stream drains (nil: none
    /// pending), and the log position its frames are due at: the log is not read past it until
    /// the replay is over (see ``ReplaySource``).
    var replay: (any ReplaySource)?
    var replayAt = UInt64.max
    /// The rest of a chunk written directly to the suspended connection's socket that the
    /// socket could not take whole: it goes out before anything else (``writeUnsent(_:)``), and
    /// until it has, the connection is not resumed (a resume asked for meanwhile is deferred).
    var unsent: [UInt8] = []
    var heartbeatSlot: HeartbeatSlots.Slot?
    /// The pages last given back, while no write may have touched them since (a heartbeat or a
    /// small event writes only the region's first, partial page): releasing them again is skipped.
    package internal(set) var untouchedRelease: (address: UInt, count: Int)?
    // Stored properties are laid out in declaration order: the one-byte flags come last, after
    // the optionals, so they share words instead of each taking one (a stream lives long).
    /// Ticks in a row that found bytes pending and none written.
    var stalledTicks: Int32 = 0
    /// True while the connection is suspended waiting for data (set only by ``read(into:)``).
    package internal(set) var waiting = false
    package internal(set) var phase = Phase.open
    /// Whether the stream was failed for falling behind (over the bound, or stalled).
    package internal(set) var dropped = false
    /// Whether the peer read anything since the stall watch's previous visit.
    var progressSinceTick = false
    /// Idle-release state of the current suspension: seen suspended by one release pass
    /// (`idleSeen`), region already given back (`idleReleased`). Both cleared on every suspend.
    var idleSeen = false
    var idleReleased = false
    /// True while the stream is in the release pass's list of streams to visit (see ``takeListing()``).
    var listed = false
    /// Whether a liveness probe was queued after the peer closed its sending side.
    var probed = false
    /// True while the stream is in its ticker's set of streams with pending bytes
    /// (``PendingStreams``; see ``takePendingListing()``).
    package internal(set) var listedPending = false
    /// True from an answer that asked for a resume until the next read: the reader is about to
    /// take what is pending, so the stream need not be listed for it (see ``takePendingListing()``).
    package internal(set) var woken = false
    /// True from a publish that scheduled a flush of this suspended stream until the flush runs
    /// (see ``published(flushable:)``).
    var flushScheduled = false
    var resumeDeferred = false
    var delivered = false
    /// Whether the frames queued before the first read (the opening ones) have been written.
    var openingWritten = false

    package init(limit: Int) {
        self.limit = limit
    }

    /// Makes the stream read `log` from its end on (see ``ChannelLog``). Frames queued before
    /// are written first.
    package mutating func attach(_ log: ChannelLog) {
        // A failed (or detached) stream reads nothing more; a finishing one nothing past now.
        guard phase != .failed else { return }
        self.log = log
        cursor = log.endCursor
        if phase == .finishing { finishAt = cursor.position }
    }

    /// The end of the log this stream reads (nil without one).
    var logEnd: UInt64? { logRef?._withUnsafeGuaranteedRef { $0.end } }

    /// Bytes of the log published and not yet read (up to where a finishing stream stops).
    var logBacklog: Int {
        guard let logEnd else { return 0 }
        return Int(Swift.min(logEnd, finishAt) &- cursor.position)
    }

    /// Bytes queued or published and not yet handed to the socket.
    package var pendingBytes: Int { queuedBytes + logBacklog + unsent.count }

    package mutating func enqueue(_ frame: Frame) -> EnqueueAction {
        guard phase == .open else { return .closed }
        guard frame.bytes.count <= limit - pendingBytes else {
            dropped = true
            return .overflow(wake: fail())
        }
        append(frame)
        return takeWaiting() ? .wake : .none
    }

    mutating func append(_ frame: Frame) {
        frames.append(Queued(frame: frame, at: logEnd ?? 0))
        queuedBytes += frame.bytes.count
    }

    /// Copies up to `out.count` pending bytes, in order, into `out` (several frames per call): what
    /// the transport's content reader calls with libmicrohttpd's buffer. No allocation, no retain
    /// of the frames it copies. When nothing is pending the stream is marked waiting, and
    /// `whileWaiting` runs at that moment, under the log's lock when the stream reads a log (a
    /// publisher that appends afterwards sees what it did). With `writeDirectly`, big log frames
    /// first go to the socket through `write` (see ``writeFramesDirectly(budget:write:)``).
    package mutating func read(
        into out: UnsafeMutableRawBufferPointer, writeDirectly: Bool = false,
        write: (UnsafeBufferPointer<UnsafeRawBufferPointer>, Int) -> SuspendedWrite = { _, _ in .unavailable },
        whileWaiting: () -> Void = {}
    ) -> ReadAction {
        if phase == .failed { return .abort }
        let max = out.count
        let address = UInt(bitPattern: out.baseAddress)
        if untouchedRelease != nil && (address != bufferAddress || max != bufferCount) {
            untouchedRelease = nil
        }
        bufferAddress = address
        bufferCount = max
        woken = false
        if writeDirectly {
            switch writeFramesDirectly(budget: Swift.max(max, Self.directWriteBudget), write: write) {
            case .copy: break
            case .failed: fail(); return .abort
            case .cutShort: markWaiting(whileWaiting); return .suspend
            }
        }
        var (written, events) = copy(into: out)
        // libmicrohttpd appends the chunk's CRLF after the data: count a few bytes more.
        if let released = untouchedRelease, written > 0, address &+ UInt(written + 16) > released.address {
            untouchedRelease = nil
        }
        if head == frames.count {
            // The array of a new stream's opening frames goes as soon as they are written: its
            // block is then the next new stream's (freed only at the idle release, every stream
            // left a hole). After that an emptied array keeps its capacity for the next frames.
            frames.removeAll(keepingCapacity: openingWritten && frames.capacity <= 64)
            openingWritten = true
            head = 0
        } else if head >= 32 && head * 2 >= frames.count {
            frames.removeFirst(head)
            head = 0
        }
        if written == 0 && phase == .open, let logRef {
            let position = cursor.position
            let idle = logRef._withUnsafeGuaranteedRef { $0.ifNothingAfter(position, { markWaiting(whileWaiting) }) }
            if !idle {
                // Published between the copy and the check: take it now.
                (written, events) = copy(into: out)
            }
        }
        if written > 0 {
            progressSinceTick = true
            if events > 0 { delivered = true }
            return .wrote(bytes: written, events: events)
        }
        if phase == .finishing { return .end }
        // Without a log nothing can arrive unseen (the caller holds the queue's lock); a log
        // reader handed no room after a publish suspends too, and is woken as usual.
        if !waiting { markWaiting(whileWaiting) }
        return .suspend
    }

    /// The log position the next frame queued for this stream alone is due at (`.max`: none).
    var nextQueuedAt: UInt64 { head < frames.count ? frames[head].at : .max }

    private mutating func markWaiting(_ whileWaiting: () -> Void) {
        waiting = true
        idleSeen = false
        idleReleased = false
        whileWaiting()
    }

    /// The copy of ``read(into:whileWaiting:)``: queued frames due at the cursor's position,
    /// then the log up to the next queued frame's position, until `out` is full.
    private mutating func copy(into out: UnsafeMutableRawBufferPointer) -> (bytes: Int, events: Int) {
        let max = out.count
        var written = 0
        var events = 0
        while written < max {
            if head < frames.count && frames[head].at <= cursor.position {
                let (n, total, isEvent) = frames[head].frame.bytes.withUnsafeBytes { bytes in
                    let n = Swift.min(bytes.count - offset, max - written)
                    if n > 0 {
                        (out.baseAddress! + written).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
                    }
                    return (n, bytes.count, frames[head].frame.isEvent)
                }
                written += n
                offset += n
                queuedBytes -= n
                if offset == total {
                    if isEvent { events += 1 }
                    head += 1
                    offset = 0
                }
                continue
            }
            guard let logRef else { break }
            let limit = Swift.min(nextQueuedAt, finishAt, replayLimit)
            guard cursor.position < limit else { break }
            var at = cursor
            let (n, e) = logRef._withUnsafeGuaranteedRef { $0.read(&at, upTo: limit, into: out, from: written) }
            cursor = at
            if n == 0 { break }
            written += n
            events += e
        }
        return (written, events)
    }

    /// Starts a graceful end. Returns true when the connection is suspended and must be resumed.
    package mutating func finish() -> Bool {
        guard phase == .open else { return false }
        phase = .finishing
        if let log { finishAt = log.end }
        return takeWaiting()
    }

    /// Drops everything queued and fails the stream. Returns true when the connection is
    /// suspended and must be resumed so the reader can close it.
    @discardableResult
    package mutating func fail() -> Bool {
        replay = nil
        frames = []
        head = 0
        offset = 0
        queuedBytes = 0
        log = nil
        // Half a chunk on the wire does not matter now: the reader closes the connection.
        unsent = []
        resumeDeferred = false
        phase = .failed
        return takeWaiting()
    }

    /// Bytes that can still be queued before the stream is over its bound.
    package var freeBytes: Int { phase == .open ? limit - pendingBytes : 0 }

    mutating func takeWaiting() -> Bool {
        if !unsent.isEmpty && phase != .failed {
            // Resumed once the rest of its direct chunk is out (``writeUnsent(_:)``).
            if waiting { resumeDeferred = true }
            return false
        }
        let was = waiting
        waiting = false
        if was { woken = true }
        return was
    }
}
