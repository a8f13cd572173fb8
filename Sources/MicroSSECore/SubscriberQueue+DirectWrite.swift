/// Events written to a suspended stream's connection without resuming its connection (the transport's
/// writer thread, for plain HTTP/1.1 streams that read a channel log): a publish that finds the
/// stream suspended schedules a flush instead of a resume, and the flush copies what the log
/// holds past the cursor and hands it to the connection to send as one chunk. Whatever the
/// connection cannot take whole goes the usual way: the connection is resumed and its reader
/// takes it.
extension SubscriberQueue {
    /// What ``published(flushable:)`` asks the publisher to do.
    package enum PublishAction: Sendable, Equatable {
        case none
        /// The connection is suspended: resume it.
        case wake
        /// The connection is suspended and stays so: schedule a flush.
        case flush
    }

    /// The most a flush writes: a larger backlog goes through the content reader (large events
    /// gain nothing from the writer's thread hop, and a chunk this small is taken whole by a
    /// connection with room).
    package static let flushBytes = 4_096

    /// The least a log frame must have left to read for the content reader to write it to the
    /// connection itself (``writeFramesDirectly(budget:write:)``): below it, copying the frame into
    /// the connection's buffer (one write for many frames) costs less than a write of its own.
    package static let directFrameBytes = 8_192

    /// What ``writeFramesDirectly(budget:write:)`` leaves the reader to do.
    enum DirectFrames {
        /// Go on: copy what is left into the connection's buffer.
        case copy
        /// A chunk was cut short: suspend until its rest is out, then resume.
        case cutShort
        /// The write failed: end the stream.
        case failed
    }

    /// The most log frames one direct write of the content reader sends (as one chunk).
    static let directFramesMax = 8

    /// The content reader's direct write of big events: while nothing has been copied for this
    /// call, a log frame at the cursor with at least ``directFrameBytes`` left goes to the
    /// connection straight from the log, with the log frames after it up to about `budget` bytes
    /// (the transport's choice), as one chunk (`write`: the connection's direct write of several
    /// pieces; at that moment nothing of the transport's is unsent, as for a suspended stream).
    /// Saves copying each big event into every reader's buffer.
    mutating func writeFramesDirectly(
        budget: Int, write: (UnsafeBufferPointer<UnsafeRawBufferPointer>, Int) -> SuspendedWrite
    ) -> DirectFrames {
        guard unsentBytes == 0, let logRef,
            logRef._withUnsafeGuaranteedRef({ $0.hasBigFrame(after: cursor.position) })
        else { return .copy }
        let limit = Swift.min(nextQueuedAt, finishAt, replayLimit)
        guard cursor.position < limit,
            let (first, offset) = logRef._withUnsafeGuaranteedRef({ $0.frame(at: cursor) }),
            first.bytes.count - offset >= Self.directFrameBytes
        else { return .copy }
        // The frames, held until written: their bytes are sent in place.
        var taken = [first]
        var end = cursor
        end.position += UInt64(first.bytes.count - offset)
        end.frame += 1
        while taken.count < Self.directFramesMax && end.position < limit
            && Int(end.position - cursor.position) < budget,
            let (frame, _) = logRef._withUnsafeGuaranteedRef({ $0.frame(at: end) }),
            end.position + UInt64(frame.bytes.count) <= limit
        {
            taken.append(frame)
            end.position += UInt64(frame.bytes.count)
            end.frame += 1
        }
        guard end.position <= limit else { return .copy }
        let events = taken.reduce(0) { $0 + ($1.isEvent ? 1 : 0) }
        let result = withUnsafeTemporaryAllocation(of: UnsafeRawBufferPointer.self, capacity: taken.count) {
            parts in
            Self.withBytes(of: taken[...], skipping: offset, into: parts) {
                write(UnsafeBufferPointer(parts), events)
            }
        }
        switch result {
        case .unavailable: return .copy
        case .failed: return .failed
        case .written, .partial:
            cursor = end
            progressSinceTick = true
            if events > 0 { delivered = true }
            if case .partial(let remaining) = result {
                unsentBytes = remaining
                return .cutShort
            }
            return .copy
        }
    }

    /// Runs `body` with `parts` set to the bytes of `frames` (the first one's after `skipping`),
    /// each valid for the whole call.
    private static func withBytes<R>(
        of frames: ArraySlice<Frame>, skipping offset: Int,
        into parts: UnsafeMutableBufferPointer<UnsafeRawBufferPointer>, _ body: () -> R
    ) -> R {
        guard let frame = frames.first else { return body() }
        return frame.bytes.withUnsafeBytes { bytes in
            parts[parts.count - frames.count] = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            return withBytes(of: frames.dropFirst(), skipping: 0, into: parts, body)
        }
    }

    /// Events were appended to the log this stream reads. A suspended stream that can be
    /// written directly (`flushable`), with nothing of its own queued and at most ``flushBytes``
    /// to write, stays suspended and gets a flush (once until it runs); any other suspended
    /// stream is to be resumed.
    package mutating func published(flushable: Bool) -> PublishAction {
        guard phase == .open, waiting, !flushScheduled else { return .none }
        if flushable && queuedBytes == 0 && logBacklog <= Self.flushBytes {
            flushScheduled = true
            return .flush
        }
        return takeWaiting() ? .wake : .none
    }

    /// What ``flush(into:write:)`` did.
    package enum FlushResult: Sendable, Equatable {
        /// Nothing (more) to do.
        case done
        /// Written; more was published meanwhile: flush again.
        case again
        /// Not written: resume the connection (its reader takes the bytes, or closes a failed stream).
        case wake
    }

    /// A scheduled flush: copies the log past the cursor into `scratch` and offers it to `write`
    /// (the connection's direct write). Written: the cursor moves on and the stream stays
    /// suspended (flushed again if more was published meanwhile). Cut short: the cursor moves on
    /// and the transport keeps the rest (``unsentBytes``). Not possible (the backlog does not fit `scratch`, frames
    /// of its own were queued since, the connection is full): the stream is resumed instead. A write
    /// that failed fails the stream.
    package mutating func flush(
        into scratch: UnsafeMutableRawBufferPointer, write: (UnsafeRawBufferPointer, Int) -> SuspendedWrite
    ) -> FlushResult {
        flushScheduled = false
        // With the rest of a chunk unsent, ``unsentWritten(remaining:)`` flushes again once it is out.
        guard phase == .open, waiting, unsentBytes == 0, replay == nil, let logRef else { return .done }
        let backlog = logBacklog
        if backlog == 0 { return .done }
        guard queuedBytes == 0, backlog <= scratch.count else { return takeWaiting() ? .wake : .done }
        var at = cursor
        let (n, events) = logRef._withUnsafeGuaranteedRef {
            $0.read(&at, upTo: finishAt, into: scratch, from: 0)
        }
        switch write(UnsafeRawBufferPointer(rebasing: scratch[..<n]), events) {
        case .written:
            cursor = at
            progressSinceTick = true
            return flushAgainIfPublished()
        case .partial(let remaining):
            cursor = at
            progressSinceTick = true
            unsentBytes = remaining
            return .done
        case .unavailable:
            return takeWaiting() ? .wake : .done
        case .failed:
            return fail() ? .wake : .done
        }
    }

    /// After a direct write: flush again when more was published meanwhile.
    private mutating func flushAgainIfPublished() -> FlushResult {
        guard waiting, phase == .open, logBacklog > 0 else { return .done }
        flushScheduled = true
        return .again
    }

    /// The transport sent what it could of the rest of a direct chunk (its writer thread, once
    /// the connection had room): `remaining` bytes are still unsent (-1: the write failed). Once
    /// all of it is out, a resume deferred meanwhile is due, or a flush of what was published
    /// meanwhile; while some remains, the transport watches the connection again.
    package mutating func unsentWritten(remaining: Int) -> FlushResult {
        guard unsentBytes > 0 else { return .done }
        if remaining < 0 { return fail() ? .wake : .done }
        if remaining < unsentBytes { progressSinceTick = true }
        unsentBytes = remaining
        if remaining > 0 { return .done }
        if wait == .suspended(resumeDeferred: true) {
            wait = .suspended(resumeDeferred: false)
            return takeWaiting() ? .wake : .done
        }
        return flushAgainIfPublished()
    }

    /// A section found `bytes` of a chunk the transport wrote by itself left unsent (the rest of
    /// a heartbeat): they are pending, and go out before anything else.
    package mutating func noteUnsent(_ bytes: Int) {
        unsentBytes = bytes
    }
}
