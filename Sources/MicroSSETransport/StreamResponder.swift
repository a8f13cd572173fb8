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
    let context = StreamSocket(
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
    return Unmanaged<StreamSocket>.fromOpaque(cls)._withUnsafeGuaranteedRef { context in
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
private func replayShare(_ context: StreamSocket) -> Int {
    guard countReplaying(context) else { return .max }
    return max(replayBytesPerReadMinimum, replayBytesPerTurn / max(1, replayingStreams.load(ordering: .relaxed)))
}

/// Counts the stream in `replayingStreams` while it replays (checked before and after each read,
/// so a stream whose replay ended leaves the count before it suspends). Whether it replays.
@discardableResult
private func countReplaying(_ context: StreamSocket) -> Bool {
    let replaying = context.subscriber.isReplaying
    if replaying != context.countedReplaying.load(ordering: .relaxed) {
        context.countedReplaying.store(replaying, ordering: .relaxed)
        replayingStreams.add(replaying ? 1 : -1, ordering: .relaxed)
    }
    return replaying
}

private func readStream(_ context: StreamSocket, into out: UnsafeMutableRawBufferPointer) -> Int {
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
    let action = context.read(
        into: out, filling: replayShare(context),
        directBudget: context.writesWhileSuspended ? StreamSocket.directWriteBudget : 0,
        // Suspend while the subscriber's lock is held, so a publisher's resume can only come
        // after the suspend (no lost wake-up, no resume of a running connection).
        onSuspend: { MHD_suspend_connection(context.connection.pointer) },
        // Once until the release pass drops it: the pass gives an idle stream's pages back.
        onListing: { context.watcher?.list(context) })
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
    let context = Unmanaged<StreamSocket>.fromOpaque(cls).takeRetainedValue()
    context.watcher?.unwatch(fd: context.fd)
    context.subscriber.detach()
    // After the detach (no section of the stream runs any more), before the socket is closed.
    context.releaseSlot()
    if context.countedReplaying.load(ordering: .relaxed) { replayingStreams.subtract(1, ordering: .relaxed) }
    // After the detach: nothing writes to the socket (or watches it for the writer) any more.
    if context.watchedByWriter.load(ordering: .relaxed) { context.writer?.unwatch(fd: context.fd) }
    // The layer above first (its disconnect callback, its counters), then the stream table: once
    // a stream no longer counts as open, its close has been handled, and a stop waiting for the
    // table to empty waits for that too.
    context.onClose()
    context.transport.streamClosed(context.subscriber)
}
