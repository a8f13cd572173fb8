internal import CMHDShim
internal import CMicroHTTPD
import MicroSSECore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Streams: a `text/event-stream` response per connection, fed by a content reader that copies
/// the subscriber's queued frames into libmicrohttpd's buffer and suspends the connection when
/// nothing is queued; a publish resumes it through the subscriber's waker (docs/DESIGN.md,
/// suspend/resume).

/// Per-stream state handed to libmicrohttpd as the content reader's `cls`, and the subscriber's
/// connection (its waker and closer: one object per stream, no closures).
private final class StreamContext: StreamConnection {
    // Every idle stream holds one of these for its whole life: the small fields go last, where
    // they share a word.
    let subscriber: Subscriber
    let connection: ConnectionHandle
    let transport: HTTPTransport
    let onClose: @Sendable () -> Void
    /// The transport's peer watcher and suspended writer (nil if it has neither).
    let threads: StreamThreads?
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

    // A heartbeat, or events from the channel log (the writer thread), sent as one chunk
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
        let result = sendChunk(fd: fd, parts: parts, events: events, transport)
        // The rest goes out before anything else, when the writer sees room.
        if case .partial = result, !watchWritable() { return .failed }
        return result
    }

    var heartbeatSocket: Int32 { writesWhileSuspended ? fd : -1 }

    func writeUnsent(_ bytes: UnsafeRawBufferPointer) -> Int {
        let sent = msse_shim_send_now(fd, bytes.baseAddress, bytes.count)
        if sent >= 0 && sent < bytes.count && !watchWritable() { return -1 }
        return sent
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

/// Sends `parts` (at most `MSSE_SHIM_CHUNK_PARTS_MAX`, finishing `events` events; none: a
/// heartbeat) to socket `fd` as one chunk, and counts what went out. The socket must be a
/// suspended stream's with nothing of libmicrohttpd's unsent (see `writesWhileSuspended`). A
/// chunk cut short answers with its rest, which must go out before anything else.
private func sendChunk(
    fd: Int32, parts: UnsafeBufferPointer<UnsafeRawBufferPointer>, events: Int, _ transport: HTTPTransport
) -> SuspendedWrite {
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
    return .partial(remaining: rest)
}

extension HTTPTransport {
    /// The ticker's direct write of a heartbeat to the socket of a suspended stream (see
    /// `HeartbeatSlots`, which guarantees nothing else writes to it meanwhile).
    package func writeHeartbeat(fd: Int32, _ bytes: UnsafeRawBufferPointer) -> SuspendedWrite {
        withUnsafeTemporaryAllocation(of: UnsafeRawBufferPointer.self, capacity: 1) { parts in
            parts[0] = bytes
            return sendChunk(fd: fd, parts: UnsafeBufferPointer(parts), events: 0, self)
        }
    }
}

/// A connection pointer carried to publisher threads. Sendable because the only cross-thread
/// call made with it is `MHD_resume_connection`, which libmicrohttpd documents as callable from
/// any thread, and it is made only while the connection is suspended (so it cannot be freed):
/// by a stream's waker, or by a deferred reply's completion.
struct ConnectionHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// Queues a stream response on `connection` (in the access handler).
func queueStream(
    headers: [(name: String, value: String)], subscriber: Subscriber, onClose: @escaping @Sendable () -> Void,
    on connection: OpaquePointer, _ transport: HTTPTransport
) -> MHD_Result {
    guard transport.register(subscriber) else {
        subscriber.detach()  // nothing pending is left listed for the ticker
        onClose()
        return queue(.text("server is stopping", status: 503), on: connection, transport)
    }
    let fd = msse_shim_connection_fd(connection)
    let threads = transport.streamThreads
    let watched = fd >= 0 && threads?.watcher?.watch(fd: fd, token: subscriber.id) == true
    let context = StreamContext(
        subscriber: subscriber, connection: ConnectionHandle(pointer: connection), transport: transport,
        onClose: onClose, threads: threads, fd: fd, watched: watched,
        plainChunked: msse_shim_stream_is_plain_chunked(connection) != 0)
    // Before the response is queued, so before the connection can ever suspend. The subscriber
    // holds the context until the free callback detaches it.
    subscriber.attach(context)
    let cls = Unmanaged.passRetained(context).toOpaque()
    guard
        let response = MHD_create_response_from_callback(
            UInt64.max, TransportOptions.streamBlockSize(http11: msse_shim_request_is_http11(connection) != 0),
            streamReader, cls, streamFreed)
    else {
        // MHD did not take ownership of cls: release it here instead of in streamFreed.
        streamFreed(cls)
        return .NO
    }
    defer { MHD_destroy_response(response) }
    context.response.store(UInt(bitPattern: Int(bitPattern: response)), ordering: .relaxed)
    for (name, value) in headers where MHD_add_response_header(response, name, value) != .YES {
        transport.log("stream header \(name) refused by libmicrohttpd; closing the connection")
        return .NO
    }
    return MHD_queue_response(connection, UInt32(MHD_HTTP_OK), response)
}

private let streamReader: MHD_ContentReaderCallback = { cls, _, buffer, max in
    guard let cls, let buffer else { return -2 }
    // MHD holds the context's reference until the free callback: borrow it, no retain per call.
    return Unmanaged<StreamContext>.fromOpaque(cls)._withUnsafeGuaranteedRef { context in
        readStream(context, into: UnsafeMutableRawBufferPointer(start: buffer, count: max))
    }
}

/// The replay bytes all replaying streams together may write in one turn of libmicrohttpd's
/// loop (see ``replayShare(_:)``).
private let replayBytesPerTurn = 1 << 19
/// The least a replaying stream writes per content-reader call, however many replay: below it
/// the per-call cost (the socket write, the history merge) dominates and the replay crawls.
private let replayBytesPerReadMinimum = 2_048
/// How many streams are reading a replay, counted by their content readers (a pacing hint: one
/// count for every transport in the process).
private let replayingStreams = Atomic<Int>(0)

/// The bytes a stream's content reader fills. libmicrohttpd's one polling thread makes
/// one reader call per writable connection per turn of its loop, so hundreds of resumes each
/// filling the whole pool (~32 KiB of replay merged from the history) made a turn last ~150 ms
/// and every other request waited for it. A replaying stream fills its share of
/// `replayBytesPerTurn` instead, never less than `replayBytesPerReadMinimum`: a few resumes
/// replay at full speed, a herd of them is paced (docs/DESIGN.md, replay through cursors).
private func replayShare(_ context: StreamContext) -> Int {
    guard countReplaying(context) else { return .max }
    return max(replayBytesPerReadMinimum, replayBytesPerTurn / max(1, replayingStreams.load(ordering: .relaxed)))
}

/// Counts the stream in `replayingStreams` while it replays (checked before and after each read,
/// so a stream whose replay ended leaves the count before it suspends). Whether it replays.
@discardableResult
private func countReplaying(_ context: StreamContext) -> Bool {
    let replaying = context.subscriber.isReplaying
    if replaying != context.countedReplaying.load(ordering: .relaxed) {
        context.countedReplaying.store(replaying, ordering: .relaxed)
        replayingStreams.add(replaying ? 1 : -1, ordering: .relaxed)
    }
    return replaying
}

private func readStream(_ context: StreamContext, into out: UnsafeMutableRawBufferPointer) -> Int {
    // libmicrohttpd built the reply head before asking for the body: from here on the
    // response's header lines are dead weight for as long as the stream lives.
    let response = context.response.load(ordering: .relaxed)
    if response != 0 {
        context.response.store(0, ordering: .relaxed)
        let freed = msse_shim_response_drop_headers(OpaquePointer(bitPattern: response))
        context.transport.streamHeaderLinesFreed.add(Int(freed), ordering: .relaxed)
    }
    // The queued frames are copied straight into libmicrohttpd's buffer, several per call (a
    // replaying stream's share of a turn).
    let subscriber = context.subscriber
    let action = subscriber.read(
        into: out, filling: replayShare(context),
        // Suspend while the subscriber's lock is held, so a publisher's resume can only come
        // after the suspend (no lost wake-up, no resume of a running connection).
        onSuspend: { MHD_suspend_connection(context.connection.pointer) },
        // Once until the release pass drops it: the pass gives an idle stream's pages back.
        onListing: { context.watcher?.list(context.subscriber) })
    countReplaying(context)
    switch action {
    case .wrote(let bytes, let events):
        context.transport.deliveredBytes.add(bytes, ordering: .relaxed)
        if events > 0 { context.transport.deliveredEvents.add(events, ordering: .relaxed) }
        return bytes
    case .suspend: return 0
    case .end: return -1  // MHD_CONTENT_READER_END_OF_STREAM: final zero-length chunk
    case .abort: return -2  // MHD_CONTENT_READER_END_WITH_ERROR: close now
    }
}

private let streamFreed: MHD_ContentReaderFreeCallback = { cls in
    guard let cls else { return }
    let context = Unmanaged<StreamContext>.fromOpaque(cls).takeRetainedValue()
    context.watcher?.unwatch(fd: context.fd)
    context.subscriber.detach()
    if context.countedReplaying.load(ordering: .relaxed) { replayingStreams.subtract(1, ordering: .relaxed) }
    // After the detach: nothing writes to the socket (or watches it for the writer) any more.
    if context.watchedByWriter.load(ordering: .relaxed) { context.writer?.unwatch(fd: context.fd) }
    // The layer above first (its disconnect callback, its counters), then the stream table: once
    // a stream no longer counts as open, its close has been handled, and a stop waiting for the
    // table to empty waits for that too.
    context.onClose()
    context.transport.streamClosed(context.subscriber)
}
