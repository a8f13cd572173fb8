/// The transport's side of one stream, installed with ``Subscriber/attach(_:)``.
package protocol StreamConnection: AnyObject, Sendable {
    /// Resumes the suspended connection (never called under a lock of ours: libmicrohttpd takes
    /// its own locks, and may run the free callback, which takes the subscriber's, inside them).
    func resume()
    /// Cuts the connection of a stream failed while its connection is not suspended (over its
    /// bound, or stalled). Such a connection may never call its content reader again (its peer
    /// reads nothing, so the socket never becomes writable), so failing the queue alone would
    /// leave it open until libmicrohttpd's inactivity timeout. Runs under the subscriber's hooks
    /// lock, which ``Subscriber/detach()`` also takes: after `detach` it is never called again.
    func cut()
    /// Whether ``writeWhileSuspended(_:events:)`` can write to this connection (a plain HTTP/1.1
    /// stream) and ``scheduleFlush()`` reaches a writer. Fixed for the connection's life.
    var writesWhileSuspended: Bool { get }
    /// Writes `bytes` (a heartbeat, or events read from the channel log that finish `events`
    /// events) to the socket of the suspended connection now, without resuming it: the transport
    /// frames and sends them itself as one chunk (a chunk cut short by a full socket is finished
    /// before anything else goes out: see ``SuspendedWrite/partial(remaining:)``). Called only while the connection is
    /// suspended and no resume has been asked for, under the subscriber's queue lock and then its
    /// hooks lock (so nothing else writes to the socket, and `detach`, which runs before the
    /// socket is closed, waits for it).
    func writeWhileSuspended(_ bytes: UnsafeRawBufferPointer, events: Int) -> SuspendedWrite
    /// ``writeWhileSuspended(_:events:)`` of `parts` (at most 8) sent one after the other as one
    /// chunk, straight from where they are. Also called by the content reader before it copies
    /// anything (libmicrohttpd asks it for more only once its previous chunk is out), under the
    /// same locks.
    func writeWhileSuspended(parts: UnsafeBufferPointer<UnsafeRawBufferPointer>, events: Int) -> SuspendedWrite
    /// The socket the ticker may write heartbeats to by itself (see ``HeartbeatSlots``): the
    /// socket when ``writesWhileSuspended``, else -1. Fixed for the connection's life.
    var heartbeatSocket: Int32 { get }
    /// Arranges for ``Subscriber/flush(into:)`` to be called soon on the transport's writer
    /// thread (only when ``writesWhileSuspended``; never under a lock of ours).
    func scheduleFlush()
    /// Writes the rest of a chunk that ``writeWhileSuspended(_:events:)`` could write only part
    /// of, under the same locks. Returns the bytes written (0: the socket is still full), or -1
    /// when the write failed. Whenever bytes remain, the transport watches the socket again and
    /// calls ``Subscriber/writeUnsent()`` once it has room.
    func writeUnsent(_ bytes: UnsafeRawBufferPointer) -> Int
}

/// What ``StreamConnection/writeWhileSuspended(_:events:)`` did.
package enum SuspendedWrite: Sendable, Equatable {
    /// Every byte was written: the connection stays suspended.
    case written
    /// Nothing was written (the connection cannot be written to directly, or its socket is
    /// full): queue the bytes and resume the connection instead.
    case unavailable
    /// Part of it was written (the socket's buffer filled up): `remaining` are the chunk's bytes
    /// still to send, before anything else may be; the transport watches the socket and calls
    /// ``Subscriber/writeUnsent()`` once it has room.
    case partial(remaining: [UInt8])
    /// The write failed (the peer is gone): the stream cannot go on.
    case failed
}

extension StreamConnection {
    package var writesWhileSuspended: Bool { false }
    package var heartbeatSocket: Int32 { -1 }
    package func writeWhileSuspended(_ bytes: UnsafeRawBufferPointer, events: Int) -> SuspendedWrite { .unavailable }
    package func scheduleFlush() {}
    /// Joins the parts and writes them with ``writeWhileSuspended(_:events:)`` (test connections).
    package func writeWhileSuspended(parts: UnsafeBufferPointer<UnsafeRawBufferPointer>, events: Int) -> SuspendedWrite
    {
        let joined = parts.flatMap { Array($0) }
        return joined.withUnsafeBytes { writeWhileSuspended($0, events: events) }
    }
    package func writeUnsent(_ bytes: UnsafeRawBufferPointer) -> Int { -1 }
}
