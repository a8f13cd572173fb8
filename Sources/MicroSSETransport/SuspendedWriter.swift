internal import CMHDShim
import MicroSSECore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Writes events to suspended streams' sockets without resuming their connections.
///
/// A publish that finds a plain HTTP/1.1 stream reading a log suspended schedules it here
/// instead of resuming it (``Subscriber/published()``). This thread then writes what the
/// log holds past the stream's cursor as one chunk, straight to the socket, and the
/// connection stays suspended: no `MHD_resume_connection` (a lock and an eventfd write), no turn
/// of libmicrohttpd's loop, no two content-reader calls and no suspend per event per stream.
/// Streams are written in batches: whatever is published while a pass runs is written by the
/// next pass, one chunk per stream, and a pass starts only after the publishing thread has had
/// the processor back once (`sched_yield`), so a burst of publishes from one turn of
/// libmicrohttpd's loop goes out together, as the content reader would batch it.
///
/// The write is safe for the reasons a direct heartbeat is (docs/DESIGN.md): it runs under the
/// subscriber's queue lock while the stream is suspended with nothing of libmicrohttpd's unsent,
/// and under its hooks lock, which the free callback takes before the socket is closed. Only a
/// backlog of at most ``SubscriberQueue/flushBytes`` with no frame queued for the stream alone is written this
/// way; anything else resumes the connection, and its reader takes over as before. A socket that
/// takes nothing (full) resumes it too. A socket that takes part of the chunk (its buffer filled
/// up) leaves the rest with the subscriber, which sends it before anything else: this thread
/// watches the socket (`EPOLLOUT`, one-shot, keyed by the subscriber's id like the peer
/// watcher's) and writes the rest when it has room, and the connection is not resumed until
/// then.
final class SuspendedWriter: @unchecked Sendable {
    // @unchecked Sendable: the descriptors and `scratch` are set in `init` and released in
    // `release()`, after the thread has been joined; the thread alone uses `scratch`.
    private let eventFD: Int32
    private let epollFD: Int32
    private var thread = pthread_t()
    private let lookup: @Sendable (UInt64) -> Subscriber?
    private let scheduled = Mutex<[Subscriber]>([])
    private let stopped = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)
    /// False once the thread has ended: schedules then resume their streams instead.
    private let running = Atomic<Bool>(true)
    private let scratch = UnsafeMutableRawBufferPointer.allocate(
        byteCount: SubscriberQueue.flushBytes, alignment: 16)

    /// Starts the writer thread, or returns nil when the kernel refuses an eventfd or a thread
    /// (streams are then always resumed, as before).
    init?(lookup: @escaping @Sendable (UInt64) -> Subscriber?) {
        self.lookup = lookup
        eventFD = msse_shim_eventfd()
        epollFD = msse_shim_epoll_create()
        let retained = Unmanaged.passRetained(self)
        guard eventFD >= 0, epollFD >= 0,
            msse_shim_epoll_watch_readable(epollFD, eventFD, Self.wakeToken) == 0,
            pthread_create(&thread, nil, suspendedWriterMain, retained.toOpaque()) == 0
        else {
            retained.release()
            if eventFD >= 0 { close(eventFD) }
            if epollFD >= 0 { close(epollFD) }
            scratch.deallocate()
            return nil
        }
    }

    private static let wakeToken = UInt64.max

    /// Watches a stream's socket until it has room for the rest of a chunk (under the
    /// subscriber's locks). Returns false when the kernel refuses.
    func watchWritable(fd: Int32, token: UInt64) -> Bool {
        msse_shim_epoll_watch_writable(epollFD, fd, token) == 0
    }

    /// Stops watching a stream's socket (the free callback, before the descriptor is closed).
    func unwatch(fd: Int32) {
        _ = msse_shim_epoll_unwatch(epollFD, fd)
    }

    /// Schedules a flush of `subscriber` (a publisher thread, outside its locks). Once the thread
    /// has ended, the stream is resumed instead.
    func schedule(_ subscriber: Subscriber) {
        guard running.load(ordering: .acquiring) else {
            subscriber.abandonFlush()
            return
        }
        let first = scheduled.withLock { list in
            list.append(subscriber)
            return list.count == 1
        }
        if first { signal() }
    }

    private func signal() {
        var one: UInt64 = 1
        _ = write(eventFD, &one, 8)
    }

    /// Ends the thread; returns once it has (no write or resume of it is still under way).
    /// Call after the streams were finished and before the last suspended ones are failed and
    /// `MHD_stop_daemon` runs; ``release()`` after it.
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        signal()
        pthread_join(thread, nil)
        running.store(false, ordering: .releasing)
        for subscriber in takeScheduled() { subscriber.abandonFlush() }
    }

    /// Releases the descriptors, once `MHD_stop_daemon` has returned (every free callback, which
    /// may unwatch a socket, has run).
    func release() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        stop()
        close(eventFD)
        close(epollFD)
        scratch.deallocate()
    }

    fileprivate func run() {
        var events = [msse_shim_epoll_event](repeating: msse_shim_epoll_event(), count: 64)
        var value: UInt64 = 0
        // Streams to flush again (more was published while they were written): one pass per
        // turn, so sockets waiting for the rest of a chunk are never starved by a busy channel.
        var again: [Subscriber] = []
        while true {
            let n = events.withUnsafeMutableBufferPointer {
                msse_shim_epoll_wait(epollFD, $0.baseAddress, Int32($0.count), again.isEmpty ? -1 : 0)
            }
            if n < 0 {
                if errno == EINTR { continue }
                abandon(again)
                return
            }
            if stopped.load(ordering: .acquiring) {
                abandon(again)
                return
            }
            var batch = again
            for event in events[..<Int(n)] {
                if event.token == Self.wakeToken {
                    _ = read(eventFD, &value, 8)
                    // Let the thread that scheduled the first stream finish its burst.
                    sched_yield()
                } else if let subscriber = lookup(event.token), subscriber.writeUnsent() {
                    batch.append(subscriber)
                }
            }
            batch += takeScheduled()
            again = batch.filter { $0.flush(into: scratch) }
        }
    }

    /// The thread is ending (stopped, or its epoll instance failed): later schedules resume
    /// their streams, and those it was to flush are resumed now.
    private func abandon(_ streams: [Subscriber]) {
        running.store(false, ordering: .releasing)
        for subscriber in streams + takeScheduled() { subscriber.abandonFlush() }
    }

    private func takeScheduled() -> [Subscriber] {
        scheduled.withLock { list in
            defer { list = [] }
            return list
        }
    }
}

private func suspendedWriterMain(_ argument: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let argument else { return nil }
    let writer = Unmanaged<SuspendedWriter>.fromOpaque(argument).takeRetainedValue()
    writer.run()
    return nil
}
