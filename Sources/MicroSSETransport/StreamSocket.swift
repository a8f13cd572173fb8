internal import CMHDShim
internal import CMicroHTTPD
import MicroSSECore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The transport's object for one stream: the content reader's `cls` and the subscriber's
/// ``StreamConnection``. It holds everything of the stream that touches the socket, a
/// libmicrohttpd buffer or a page — the socket, the heartbeat slot, the rest of a chunk the
/// socket took only part of, the write region given back while idle — and drives the Core queue
/// through its ``Subscriber`` (docs/DESIGN.md, "One stream, two layers").
///
/// `unsent` and `idle` are guarded by the subscriber's queue lock: they are touched only in the
/// subscriber's sections (its calls into this object, the `whileLocked` of a read, and
/// ``Subscriber/withQueue(_:)``).
final class StreamSocket: StreamConnection, IdleRegionOwner {
    // Every idle stream holds one of these for its whole life: the small fields go last, where
    // they share a word.
    let subscriber: Subscriber
    let connection: ConnectionHandle
    let transport: HTTPTransport
    let onClose: @Sendable () -> Void
    /// The transport's peer watcher and suspended writer (nil if it has neither).
    let threads: StreamThreads?
    /// The stream's slot in the transport's heartbeat table (nil: the transport has none).
    let slot: HeartbeatSlots.Slot?
    /// The rest of a chunk written while suspended that the socket could not take whole (the
    /// queue counts it in ``SubscriberQueue/unsentBytes``).
    nonisolated(unsafe) var unsent: [UInt8] = []
    /// The release pass's bookkeeping of the write region the reader was last handed.
    nonisolated(unsafe) var idle = IdleRelease()
    /// The stream's libmicrohttpd response until the content reader's first call frees its
    /// header lines (0 after). Read and written on the connection's thread only.
    let response = Atomic<UInt>(0)
    /// The socket (-1 if libmicrohttpd did not tell it).
    let fd: Int32
    /// Whether the socket is registered with the peer watcher (removed in the free callback,
    /// before libmicrohttpd closes the socket).
    let watched: Bool
    /// Whether the stream goes out as plain HTTP/1.1 chunks on `fd`, so that a whole chunk may
    /// be written to the socket directly while the connection is suspended.
    let plainChunked: Bool
    /// Whether the writer ever watched the socket (for the rest of a chunk cut short).
    let watchedByWriter = Atomic<Bool>(false)
    /// Whether the stream counts in `replayingStreams` (read and written on the connection's
    /// thread, and by the free callback).
    let countedReplaying = Atomic<Bool>(false)

    /// About the most one direct write of the content reader sends (or the buffer libmicrohttpd
    /// handed it, if larger): 64 KiB, the largest segment TCP builds on loopback, sent with one
    /// `sendmsg`. Measured against the 28 KiB buffer of a default pool (16 KiB events to 100
    /// readers): 1.5–1.8 × the deliveries per second.
    static let directWriteBudget = 65_536

    init(
        subscriber: Subscriber, connection: ConnectionHandle, transport: HTTPTransport,
        onClose: @escaping @Sendable () -> Void, threads: StreamThreads?, fd: Int32, watched: Bool,
        plainChunked: Bool
    ) {
        self.subscriber = subscriber
        self.connection = connection
        self.transport = transport
        self.onClose = onClose
        self.threads = threads
        self.fd = fd
        self.watched = watched
        self.plainChunked = plainChunked
        let direct = plainChunked && fd >= 0 && threads?.writer != nil
        // Heartbeats of a stream that cannot be written directly go through its queue.
        self.slot = transport.heartbeats.allocate(owner: subscriber, fd: direct ? fd : -1)
    }

    /// The watcher the socket is registered with, if any.
    var watcher: PeerWatcher? { watched ? threads?.watcher : nil }
    /// The thread that writes events to the socket while the connection stays suspended.
    var writer: SuspendedWriter? { threads?.writer }

    func resume() { MHD_resume_connection(connection.pointer) }

    // libmicrohttpd owns the socket and closes it only after the response's free callback has
    // run (MHD_connection_close_ destroys the response first), and that callback detaches the
    // subscriber under the lock this runs under: the fd is never used after it is closed.
    func cut() {
        if fd >= 0 { _ = shutdown(fd, Int32(SHUT_RDWR)) }
    }

    func enterSection() -> Int {
        guard let slot, let rest = transport.heartbeats.enter(slot) else { return 0 }
        unsent = rest
        return rest.count
    }

    func leaveSection(idle: Bool, active: Bool) {
        if let slot { transport.heartbeats.leave(slot, idle: idle, active: active) }
    }

    /// Gives the heartbeat slot back (the free callback, after the subscriber's detach).
    func releaseSlot() {
        if let slot { transport.heartbeats.release(slot) }
    }

    // Events from the channel log (the writer thread, or the content reader), sent as one chunk
    // straight to the socket: resuming the connection for them (libmicrohttpd's resume, a turn
    // of its loop, two content-reader calls, the suspend) cost more than the `send` itself.
    // Safe for the reasons `cut()` is (the free callback, which runs before the socket is
    // closed, waits for the hooks lock this runs under), and because the connection is
    // suspended with nothing of libmicrohttpd's left unsent (its content reader is only asked
    // for more once the previous chunk is out), so no other write can interleave. A socket that
    // takes nothing makes the caller resume the connection instead; one that takes part of the
    // chunk leaves the rest to be sent first, when the writer sees room (`writeUnsent`); a
    // failed write (a reset) ends the stream.
    var writesWhileSuspended: Bool { plainChunked && fd >= 0 && writer != nil }

    func writeWhileSuspended(_ bytes: UnsafeRawBufferPointer, events: Int) -> SuspendedWrite {
        withUnsafeTemporaryAllocation(of: UnsafeRawBufferPointer.self, capacity: 1) { parts in
            parts[0] = bytes
            return writeWhileSuspended(parts: UnsafeBufferPointer(parts), events: events)
        }
    }

    func writeWhileSuspended(parts: UnsafeBufferPointer<UnsafeRawBufferPointer>, events: Int) -> SuspendedWrite {
        guard plainChunked, fd >= 0 else { return .unavailable }
        switch sendChunk(fd: fd, parts: parts, events: events, transport) {
        case .written: return .written
        case .unavailable: return .unavailable
        case .failed: return .failed
        case .partial(let rest):
            // The rest goes out before anything else, when the writer sees room.
            guard watchWritable() else { return .failed }
            unsent = rest
            return .partial(unsent: rest.count)
        }
    }

    func writeUnsent() -> Int {
        guard !unsent.isEmpty else { return 0 }
        let sent = unsent.withUnsafeBytes { msse_shim_send_now(fd, $0.baseAddress, $0.count) }
        if sent < 0 { return -1 }
        unsent.removeFirst(sent)
        if !unsent.isEmpty && !watchWritable() { return -1 }
        return unsent.count
    }

    private func watchWritable() -> Bool {
        guard let writer else { return false }
        watchedByWriter.store(true, ordering: .relaxed)
        return writer.watchWritable(fd: fd, token: subscriber.id)
    }

    func scheduleFlush() {
        writer?.schedule(subscriber)
    }
}

/// What a chunk written to a suspended stream's socket did (see ``sendChunk(fd:parts:events:_:)``).
package enum ChunkWrite: Sendable, Equatable {
    case written
    /// Nothing was written (the socket is full).
    case unavailable
    /// Part of it: `rest` is what the socket did not take, to send before anything else.
    case partial(rest: [UInt8])
    case failed
}

/// Sends `parts` (at most `MSSE_SHIM_CHUNK_PARTS_MAX`, finishing `events` events; none: a
/// heartbeat) to socket `fd` as one chunk, and counts what went out. The socket must be a
/// suspended stream's with nothing of libmicrohttpd's unsent (see `writesWhileSuspended`). A
/// chunk cut short answers with its rest, which must go out before anything else.
func sendChunk(
    fd: Int32, parts: UnsafeBufferPointer<UnsafeRawBufferPointer>, events: Int, _ transport: HTTPTransport
) -> ChunkWrite {
    guard parts.count <= Int(MSSE_SHIM_CHUNK_PARTS_MAX) else { return .unavailable }
    let size = parts.reduce(0) { $0 + $1.count }
    var length = 0
    let sent = withUnsafeTemporaryAllocation(of: msse_shim_part.self, capacity: parts.count) { pieces in
        for i in parts.indices { pieces[i] = msse_shim_part(bytes: parts[i].baseAddress, size: parts[i].count) }
        return msse_shim_send_chunk_parts(fd, pieces.baseAddress, Int32(parts.count), &length)
    }
    if sent < 0 { return .failed }
    if sent == 0 { return .unavailable }
    transport.deliveredBytes.add(size, ordering: .relaxed)
    if events > 0 {
        transport.deliveredEvents.add(events, ordering: .relaxed)
        transport.eventsWrittenDirectly.add(events, ordering: .relaxed)
    } else {
        transport.heartbeatsWrittenDirectly.add(1, ordering: .relaxed)
    }
    if sent == length { return .written }
    // The socket filled up mid-chunk: what it did not take is copied, once.
    transport.chunksCutShort.add(1, ordering: .relaxed)
    var head = [CChar](repeating: 0, count: Int(MSSE_SHIM_CHUNK_HEAD_MAX))
    let headCount = msse_shim_chunk_head(size, &head)
    var rest: [UInt8] = []
    rest.reserveCapacity(length - sent)
    var skip = sent
    func take(_ piece: UnsafeRawBufferPointer) {
        let n = min(skip, piece.count)
        skip -= n
        rest.append(contentsOf: piece[n...])
    }
    head.withUnsafeBytes { take(UnsafeRawBufferPointer(rebasing: $0[..<headCount])) }
    for part in parts { take(part) }
    [UInt8(0x0D), 0x0A].withUnsafeBytes { take($0) }
    return .partial(rest: rest)
}

extension HTTPTransport {
    /// The ticker's direct write of a heartbeat to the socket of a suspended stream (see
    /// `HeartbeatSlots`, which guarantees nothing else writes to it meanwhile).
    func writeHeartbeat(fd: Int32, _ bytes: UnsafeRawBufferPointer) -> ChunkWrite {
        withUnsafeTemporaryAllocation(of: UnsafeRawBufferPointer.self, capacity: 1) { parts in
            parts[0] = bytes
            return sendChunk(fd: fd, parts: UnsafeBufferPointer(parts), events: 0, self)
        }
    }

    /// The ticker's heartbeat pass over this transport's streams (see ``HeartbeatSlots/heartbeat(_:)``).
    package func heartbeatPass(_ frame: Frame) {
        heartbeats.heartbeat(frame)
    }
}

/// A connection pointer carried to publisher threads. Sendable because the only cross-thread
/// call made with it is `MHD_resume_connection`, which libmicrohttpd documents as callable from
/// any thread, and it is made only while the connection is suspended (so it cannot be freed):
/// by a stream's waker, or by a deferred reply's completion.
struct ConnectionHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}
