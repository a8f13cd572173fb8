/// The direct-write side of ``Subscriber``: events and the rest of a chunk written to a
/// suspended connection by the transport's writer thread (see ``SubscriberQueue``'s
/// direct-write extension).
extension Subscriber {
    /// The channel log this stream reads got events: resumes a suspended connection, or, when
    /// the transport can write to it while suspended, schedules a flush on its writer (see
    /// ``SubscriberQueue/published(flushable:)``). Call outside the publisher's lock.
    package func published() {
        switch locked({ $0.published(flushable: flushable.load(ordering: .relaxed)) }) {
        case .wake: wake()
        case .flush: hooks.withLock { $0 }?.scheduleFlush()
        case .none: break
        }
    }

    /// A scheduled flush (the transport's writer thread; see
    /// ``SubscriberQueue/flush(into:write:)``): writes what the log holds past the cursor to the
    /// suspended connection's socket through `scratch`. Returns whether to flush again.
    package func flush(into scratch: UnsafeMutableRawBufferPointer) -> Bool {
        directWrite { q in
            // Lock order: the queue's, then the hooks' (as for a heartbeat).
            q.flush(into: scratch) { bytes, events in
                hooks.withLock { $0?.writeWhileSuspended(bytes, events: events) ?? .unavailable }
            }
        }
    }

    /// A direct write under the queue's lock (a flush, or the rest of a chunk), then what it asks
    /// for: a resume now, or another flush (returns true). A chunk cut short leaves bytes pending,
    /// which are watched for a stall like any.
    private func directWrite(_ body: (inout SubscriberQueue) -> SubscriberQueue.FlushResult) -> Bool {
        let result = locked { q in
            let result = body(&q)
            listIfPending(&q)
            return result
        }
        if result == .wake { wake() }
        return result == .again
    }

    /// A scheduled flush that will not run (the transport's writer has ended): the stream is
    /// resumed instead, and its reader takes what is pending.
    package func abandonFlush() {
        let needsWake = locked { q in
            guard q.flushScheduled else { return false }
            q.flushScheduled = false
            return q.takeWaiting()
        }
        if needsWake { wake() }
    }

    /// Fails the stream if the rest of a direct chunk is still unsent (the transport's stop,
    /// after the drain: such a connection is still suspended, and must be resumed to close).
    package func failIfWriteUnfinished() {
        let needsWake = locked { q in
            guard q.unsentBytes > 0 else { return false }
            return q.fail()
        }
        if needsWake { wake() }
    }

    /// The connection has room for the rest of a direct chunk (the transport's writer thread):
    /// the transport sends what it can of it (``StreamConnection/writeUnsent()``), and the queue
    /// learns what is left (``SubscriberQueue/unsentWritten(remaining:)``). Returns whether to
    /// flush.
    package func writeUnsent() -> Bool {
        directWrite { q in
            guard q.unsentBytes > 0 else { return .done }
            // Lock order: the queue's, then the hooks' (as for a flush).
            return q.unsentWritten(remaining: hooks.withLock { $0?.writeUnsent() ?? -1 })
        }
    }

    /// Schedules a flush on the attached connection's writer (outside any lock of ours).
    package func scheduleFlush() {
        hooks.withLock { $0 }?.scheduleFlush()
    }
}
