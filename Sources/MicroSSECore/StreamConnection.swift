/// The transport's side of one stream, installed with ``Subscriber/attach(_:)``: the object that
/// owns the stream's socket and everything that touches it (direct writes and the unsent rest
/// of a chunk, the heartbeat table's slot, the write region given back while idle). Core only
/// asks it to act; it never sees a socket, a buffer of the transport or a page.
package protocol StreamConnection: AnyObject, Sendable {
    /// Resumes the suspended connection (never called under a lock of ours: the transport may
    /// take its own locks, and run its free callback, which takes the subscriber's, inside them).
    func resume()
    /// Cuts the connection of a stream failed while its connection is not suspended (over its
    /// bound, or stalled). Such a connection may never call its content reader again (its peer
    /// reads nothing, so the socket never becomes writable), so failing the queue alone would
    /// leave it open until the transport's inactivity timeout. Runs under the subscriber's hooks
    /// lock, which ``Subscriber/detach()`` also takes: after `detach` it is never called again.
    func cut()
    /// Whether ``writeWhileSuspended(_:events:)`` can write to this connection and
    /// ``scheduleFlush()`` reaches a writer. Fixed for the connection's life.
    var writesWhileSuspended: Bool { get }
    /// Starts a section under the subscriber's queue lock (every section starts so). Returns the
    /// bytes the transport now holds unsent for this stream that it wrote by itself outside any
    /// section (the rest of a heartbeat chunk; 0: none): the queue counts them pending and
    /// resumes nothing until ``writeUnsent()`` has sent them.
    func enterSection() -> Int
    /// Ends a section under the subscriber's queue lock: `idle` says whether the transport may
    /// now write to the stream by itself (suspended, nothing pending or unsent, no flush or
    /// resume on its way), `active` whether the section was the stream's activity (events
    /// written or queued).
    func leaveSection(idle: Bool, active: Bool)
    /// Writes `bytes` (events read from the channel log that finish `events` events) to the
    /// suspended connection now, without resuming it, as one chunk. A chunk cut short by a full
    /// socket is kept by the transport and finished before anything else goes out (see
    /// ``SuspendedWrite/partial(unsent:)``). Called only while the connection is suspended and
    /// no resume has been asked for, under the subscriber's queue lock and then its hooks lock
    /// (so nothing else writes to the connection, and `detach` waits for it).
    func writeWhileSuspended(_ bytes: UnsafeRawBufferPointer, events: Int) -> SuspendedWrite
    /// ``writeWhileSuspended(_:events:)`` of `parts` (at most 8) sent one after the other as one
    /// chunk, straight from where they are. Also called by the content reader before it copies
    /// anything (the transport asks it for more only once its previous chunk is out), under the
    /// same locks.
    func writeWhileSuspended(parts: UnsafeBufferPointer<UnsafeRawBufferPointer>, events: Int) -> SuspendedWrite
    /// Arranges for ``Subscriber/flush(into:)`` to be called soon on the transport's writer
    /// thread (only when ``writesWhileSuspended``; never under a lock of ours).
    func scheduleFlush()
    /// Sends what it can of the rest of a chunk it holds unsent, under the same locks. Returns
    /// the bytes still unsent (0: all out), or -1 when the write failed. Whenever bytes remain,
    /// the transport watches the connection and calls ``Subscriber/writeUnsent()`` once it has
    /// room.
    func writeUnsent() -> Int
}

/// What ``StreamConnection/writeWhileSuspended(_:events:)`` did.
package enum SuspendedWrite: Sendable, Equatable {
    /// Every byte was written: the connection stays suspended.
    case written
    /// Nothing was written (the connection cannot be written to directly, or it is full): queue
    /// the bytes and resume the connection instead.
    case unavailable
    /// Part of it was written: the transport keeps the `unsent` bytes left of the chunk, which go
    /// out before anything else may; it calls ``Subscriber/writeUnsent()`` once it has room.
    case partial(unsent: Int)
    /// The write failed (the peer is gone): the stream cannot go on.
    case failed
}

extension StreamConnection {
    package var writesWhileSuspended: Bool { false }
    package func enterSection() -> Int { 0 }
    package func leaveSection(idle: Bool, active: Bool) {}
    package func writeWhileSuspended(_ bytes: UnsafeRawBufferPointer, events: Int) -> SuspendedWrite { .unavailable }
    package func scheduleFlush() {}
    /// Joins the parts and writes them with ``writeWhileSuspended(_:events:)`` (test connections).
    package func writeWhileSuspended(parts: UnsafeBufferPointer<UnsafeRawBufferPointer>, events: Int) -> SuspendedWrite
    {
        let joined = parts.flatMap { Array($0) }
        return joined.withUnsafeBytes { writeWhileSuspended($0, events: events) }
    }
    package func writeUnsent() -> Int { -1 }
}
