import Synchronization

/// A read position in a ``ChannelLog``: the byte position (bytes appended to the log before it)
/// and the number of the frame it falls in (frames are numbered from 0 as they are appended).
package struct LogCursor: Sendable, Equatable {
    package var position: UInt64 = 0
    package var frame: UInt64 = 0
}

/// A live log of events: each event published to a channel is appended once, in publish order,
/// to the channel's log and to the log of each channel set that includes it (see
/// `LogReaders.swift`), and every stream reading the log has its own ``LogCursor``.
/// Publishing costs one append whatever the number of subscribers (no frame is queued, retained
/// or released per subscriber); a frame leaves the log once every cursor has passed it
/// (``trim(below:)``). A subscriber's backlog is its distance from ``end``.
///
/// Positions count the bytes appended since the log was made and never go back.
package final class ChannelLog: Sendable {
    private struct State {
        var frames: [Frame] = []
        /// The position where each frame of `frames` starts.
        var starts: [UInt64] = []
        /// Index in `frames` of the oldest frame still held.
        var head = 0
        /// The number of `frames[0]`.
        var base: UInt64 = 0
        var end: UInt64 = 0
        var count: UInt64 = 0
    }

    private let state = Mutex(State())
    /// ``end``, readable without the lock.
    private let endPosition = Atomic<UInt64>(0)
    /// Where the last frame of at least ``SubscriberQueue/directFrameBytes`` ends (0: none yet),
    /// readable without the lock: a reader past it has no frame to write directly.
    private let bigFrameEnd = Atomic<UInt64>(0)

    package init() {}

    /// The position after the last frame appended.
    package var end: UInt64 { endPosition.load(ordering: .acquiring) }

    /// A cursor at ``end``: what a new subscriber starts from.
    package var endCursor: LogCursor {
        state.withLock { LogCursor(position: $0.end, frame: $0.count) }
    }

    /// Appends `frame` (non-empty) and returns the new end.
    @discardableResult
    package func append(_ frame: Frame) -> UInt64 {
        state.withLock { s in
            s.frames.append(frame)
            s.starts.append(s.end)
            s.end += UInt64(frame.bytes.count)
            s.count += 1
            if frame.bytes.count >= SubscriberQueue.directFrameBytes { bigFrameEnd.store(s.end, ordering: .relaxed) }
            endPosition.store(s.end, ordering: .releasing)
            return s.end
        }
    }

    /// Drops the frames that end at or before `position` (the lowest cursor of the log's
    /// readers): none of them will be read again.
    package func trim(below position: UInt64) {
        state.withLock { s in
            while s.head < s.frames.count && s.starts[s.head] + UInt64(s.frames[s.head].bytes.count) <= position {
                s.frames[s.head] = Self.gone
                s.head += 1
            }
            if s.head == s.frames.count {
                s.base += UInt64(s.head)
                s.frames.removeAll(keepingCapacity: s.frames.capacity <= 64)
                s.starts.removeAll(keepingCapacity: s.starts.capacity <= 64)
                s.head = 0
            } else if s.head >= 32 && s.head * 2 >= s.frames.count {
                s.base += UInt64(s.head)
                s.frames.removeFirst(s.head)
                s.starts.removeFirst(s.head)
                s.head = 0
            }
        }
    }

    /// Frames held (tests).
    package var heldFrames: Int { state.withLock { $0.frames.count - $0.head } }

    /// What a trimmed slot holds until the arrays are compacted.
    private static let gone = Frame(bytes: [], isEvent: false)

    /// Copies frames from `cursor` into `out` from offset `start`, stopping at position `limit`
    /// or when `out` is full, and advances `cursor`. Returns the bytes copied and the whole
    /// events finished. No allocation, no retain of the frames it copies.
    func read(
        _ cursor: inout LogCursor, upTo limit: UInt64, into out: UnsafeMutableRawBufferPointer, from start: Int
    ) -> (bytes: Int, events: Int) {
        state.withLock { s in
            var written = start
            var events = 0
            var i = Int(cursor.frame - s.base)
            precondition(i >= s.head, "a log cursor fell behind the log's trim point")
            while i < s.frames.count && written < out.count && cursor.position < limit {
                let offset = Int(cursor.position - s.starts[i])
                let (n, total, isEvent) = s.frames[i].bytes.withUnsafeBytes { bytes in
                    let room = Int(clamping: limit - cursor.position)
                    let n = Swift.min(bytes.count - offset, out.count - written, room)
                    (out.baseAddress! + written).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
                    return (n, bytes.count, s.frames[i].isEvent)
                }
                written += n
                cursor.position += UInt64(n)
                if offset + n == total {
                    if isEvent { events += 1 }
                    i += 1
                    cursor.frame += 1
                }
            }
            return (written - start, events)
        }
    }

    /// Whether a frame of at least ``SubscriberQueue/directFrameBytes`` ends after `position`
    /// (without the lock; a frame appended meanwhile may be missed, and is copied instead).
    func hasBigFrame(after position: UInt64) -> Bool {
        bigFrameEnd.load(ordering: .relaxed) > position
    }

    /// The frame `cursor` falls in and the offset of the cursor in it (retained: the caller may
    /// use its bytes outside the log's lock), or nil at the log's end.
    func frame(at cursor: LogCursor) -> (frame: Frame, offset: Int)? {
        state.withLock { s in
            let i = Int(cursor.frame - s.base)
            precondition(i >= s.head, "a log cursor fell behind the log's trim point")
            guard i < s.frames.count else { return nil }
            return (s.frames[i], Int(cursor.position - s.starts[i]))
        }
    }

    /// Runs `idle` under the log's lock when nothing was appended after `position`, so an append
    /// either comes before the check (and is seen) or after `idle` (and sees what it did).
    /// Returns whether `idle` ran.
    func ifNothingAfter(_ position: UInt64, _ idle: () -> Void) -> Bool {
        state.withLock { s in
            guard s.end == position else { return false }
            idle()
            return true
        }
    }
}

/// One publish to a channel log's readers: the append, then one look at each reader's mirrored
/// state (``Subscriber/logView``: no lock, no retain, nothing queued per reader), then what
/// the look found to do, outside the publisher's lock (``finish()``): resume the suspended
/// readers, fail those over their bound, list for the stall watch those behind that are neither
/// suspended nor about to read.
package struct LogFanOut {
    private var wakes: [Subscriber] = []
    private var over: [Subscriber] = []
    private var behind: [Subscriber] = []

    package init() {}

    /// Appends `frame` to `log`, looks at every reader, and drops the frames every reader has
    /// passed. Call under the lock that orders the log's appends with its readers' arrival.
    package mutating func append(_ frame: Frame, to log: ChannelLog, readers: [Subscriber]) {
        look(at: readers, end: log.append(frame), of: log)
    }

    /// ``append(_:to:readers:)`` of several frames, the readers looked at once, after the last.
    package mutating func append(_ frames: [Frame], to log: ChannelLog, readers: [Subscriber]) {
        guard var end = frames.first.map({ log.append($0) }) else { return }
        for frame in frames.dropFirst() { end = log.append(frame) }
        look(at: readers, end: end, of: log)
    }

    private mutating func look(at readers: [Subscriber], end: UInt64, of log: ChannelLog) {
        var low = end
        // The array keeps every reader alive while the caller's lock is held.
        readers.withUnsafeBufferPointer { subs in
            for i in subs.indices {
                let (view, limit, watched) = Unmanaged.passUnretained(subs[i])._withUnsafeGuaranteedRef {
                    ($0.logView, $0.limit, $0.pending != nil)
                }
                if view.failed { continue }
                low = Swift.min(low, view.position)
                if Int(truncatingIfNeeded: end &- view.position) + view.queuedBytes > limit {
                    over.append(subs[i])
                } else if view.waiting {
                    wakes.append(subs[i])
                } else if watched && !view.woken && !view.listed {
                    behind.append(subs[i])
                }
            }
        }
        log.trim(below: low)
    }

    /// The work ``append(_:to:readers:)`` found, outside the publisher's lock (resuming takes
    /// the transport's locks).
    package func finish() {
        for sub in over { sub.failIfOver() }
        wakes.withUnsafeBufferPointer { subs in
            for i in subs.indices {
                Unmanaged.passUnretained(subs[i])._withUnsafeGuaranteedRef { $0.published() }
            }
        }
        for sub in behind { sub.listIfPending() }
    }
}
