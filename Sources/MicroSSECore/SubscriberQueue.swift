import MicroSSEWire

/// One subscriber's pending output and its suspend/resume handshake, as a state machine whose
/// methods return what the caller must do (Hummingbird's connection state machine style).
///
/// Pure: no socket, no buffer of the transport, no clock. ``Subscriber`` keeps it behind a lock;
/// publishers call ``enqueue(_:)``, the transport's content reader calls ``read(into:)``.
/// docs/DESIGN.md draws its states.
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

    /// The suspend/resume handshake with the transport's connection (docs/DESIGN.md, "One
    /// stream, two layers", draws it).
    package enum Wait: Sendable, Equatable {
        /// The connection runs: its reader is called when the connection can take bytes (the
        /// state a stream starts in).
        case reading
        /// Suspended, waiting for something to write (entered only by a read that answers
        /// `.suspend`). `resumeDeferred`: a resume was asked for while the rest of a direct
        /// chunk was unsent; it is due once the rest is out (``unsentWritten(remaining:)``).
        case suspended(resumeDeferred: Bool)
        /// An answer asked the transport to resume the connection; its reader has not run since
        /// (it is about to take what is pending).
        case woken
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

    /// What ``read(into:)`` asks the content reader to answer the transport.
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
    /// `log` used without a retain and release per use (`log` keeps it alive; see
    /// docs/DESIGN.md, "What Core may hold").
    var logRef: Unmanaged<ChannelLog>?
    package internal(set) var cursor = LogCursor()
    /// While finishing: the log's end when the stream started to finish (nothing after it is sent).
    var finishAt = UInt64.max
    /// The rest of a resume's replay, read a chunk at a time as the stream drains (nil: none
    /// pending), and the log position its frames are due at: the log is not read past it until
    /// the replay is over (see ``ReplaySource``).
    var replay: (any ReplaySource)?
    var replayAt = UInt64.max
    /// The bytes of a chunk written directly to the suspended connection that it could not take
    /// whole, which the transport holds: they go out before anything else (``unsentWritten(_:)``),
    /// and until they have, the connection is not resumed (a resume asked for meanwhile is deferred).
    package internal(set) var unsentBytes = 0
    // Stored properties are laid out in declaration order: the one-byte flags come last, after
    // the optionals, so they share words instead of each taking one (a stream lives long).
    /// Ticks in a row that found bytes pending and none written (saturating).
    var stalledTicks: UInt16 = 0
    package internal(set) var wait = Wait.reading
    package internal(set) var phase = Phase.open
    /// Whether the stream was failed for falling behind (over the bound, or stalled).
    package internal(set) var dropped = false
    /// Whether the peer read anything since the stall watch's previous visit.
    var progressSinceTick = false
    /// Whether a liveness probe was queued after the peer closed its sending side.
    var probed = false
    /// True while the stream is in its ticker's set of streams with pending bytes
    /// (``PendingStreams``; see ``takePendingListing()``).
    package internal(set) var listedPending = false
    /// True from a publish that scheduled a flush of this suspended stream until the flush runs
    /// (see ``published(flushable:)``): the transport's writer holds the stream meanwhile,
    /// whatever the wait state became.
    var flushScheduled = false
    var delivered = false
    /// Whether the frames queued before the first read (the opening ones) have been written.
    var openingWritten = false

    package init(limit: Int) {
        self.limit = limit
    }

    /// Suspended, waiting for data.
    package var waiting: Bool {
        if case .suspended = wait { true } else { false }
    }

    /// A resume is on its way to the reader, which is about to take what is pending: the stream
    /// need not be listed for the stall watch (see ``takePendingListing()``).
    package var woken: Bool { wait == .woken }

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
    package var pendingBytes: Int { queuedBytes + logBacklog + unsentBytes }

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
    /// the transport's content reader calls with the connection's buffer. No allocation, no retain
    /// of the frames it copies. When nothing is pending the stream is marked waiting, and
    /// `whileWaiting` runs at that moment, under the log's lock when the stream reads a log (a
    /// publisher that appends afterwards sees what it did). With a `directBudget` above 0, big
    /// log frames first go to the connection through `write`, up to about that many bytes (see
    /// ``writeFramesDirectly(budget:write:)``).
    package mutating func read(
        into out: UnsafeMutableRawBufferPointer, directBudget: Int = 0,
        write: (UnsafeBufferPointer<UnsafeRawBufferPointer>, Int) -> SuspendedWrite = { _, _ in .unavailable },
        whileWaiting: () -> Void = {}
    ) -> ReadAction {
        if phase == .failed { return .abort }
        let max = out.count
        if wait == .woken { wait = .reading }
        if directBudget > 0 {
            switch writeFramesDirectly(budget: Swift.max(max, directBudget), write: write) {
            case .copy: break
            case .failed: fail(); return .abort
            case .cutShort:
                // Resumed once the rest is out (``unsentWritten(remaining:)``), to read on.
                markWaiting(whileWaiting, resumeDeferred: true)
                return .suspend
            }
        }
        var (written, events) = copy(into: out)
        if head == frames.count {
            // The array of a new stream's opening frames goes as soon as they are written: its
            // block is then the next new stream's (freed only when the stream idles, every stream
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

    private mutating func markWaiting(_ whileWaiting: () -> Void, resumeDeferred: Bool = false) {
        wait = .suspended(resumeDeferred: resumeDeferred)
        whileWaiting()
    }

    /// The stream idles (suspended, nothing queued): its emptied frame array gives its spare
    /// capacity back (the transport says when, see docs/DESIGN.md on idle streams).
    package mutating func dropSpareCapacity() {
        if frames.isEmpty && frames.capacity > 0 { frames = [] }
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
        unsentBytes = 0
        phase = .failed
        return takeWaiting()
    }

    /// Bytes that can still be queued before the stream is over its bound.
    package var freeBytes: Int { phase == .open ? limit - pendingBytes : 0 }

    /// A resume is asked for: true when the connection is suspended and must be resumed (the
    /// stream is then woken). With the rest of a direct chunk unsent, the resume is deferred
    /// until it is out.
    mutating func takeWaiting() -> Bool {
        guard case .suspended = wait else { return false }
        if unsentBytes > 0 && phase != .failed {
            wait = .suspended(resumeDeferred: true)
            return false
        }
        wait = .woken
        return true
    }
}
