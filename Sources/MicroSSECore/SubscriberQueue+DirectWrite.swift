/// Events written to a suspended stream's socket without resuming its connection (the transport's
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
    /// socket with room).
    package static let flushBytes = 4_096

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
    /// and the rest is kept (``unsent``). Not possible (the backlog does not fit `scratch`, frames
    /// of its own were queued since, the socket is full): the stream is resumed instead. A write
    /// that failed fails the stream.
    package mutating func flush(
        into scratch: UnsafeMutableRawBufferPointer, write: (UnsafeRawBufferPointer, Int) -> SuspendedWrite
    ) -> FlushResult {
        flushScheduled = false
        // With the rest of a chunk unsent, ``writeUnsent(_:)`` flushes again once it is out.
        guard phase == .open, waiting, unsent.isEmpty, let logRef else { return .done }
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
            unsent = remaining
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

    /// The socket has room for the rest of a direct chunk (the transport's writer thread):
    /// `send` writes what it can of it. Once all of it is out, a resume deferred meanwhile is
    /// due, or a flush of what was published meanwhile; while some remains, the transport
    /// watches the socket again.
    package mutating func writeUnsent(_ send: (UnsafeRawBufferPointer) -> Int) -> FlushResult {
        guard !unsent.isEmpty else { return .done }
        let n = unsent.withUnsafeBytes { send($0) }
        if n < 0 { return fail() ? .wake : .done }
        if n > 0 { progressSinceTick = true }
        if n < unsent.count {
            unsent.removeFirst(n)
            return .done
        }
        unsent = []
        if resumeDeferred {
            resumeDeferred = false
            return takeWaiting() ? .wake : .done
        }
        return flushAgainIfPublished()
    }
}
