internal import CMHDShim
import MicroSSECore
import MicroSSEWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Notices closed peers at once, and gives idle streams' buffer pages back to the kernel.
///
/// libmicrohttpd does not watch a suspended connection's socket, so a subscriber that closed an
/// idle stream kept its slot until a write failed (the next heartbeat or two). This watcher owns
/// one epoll instance and one thread. Every stream's socket is registered once, when the stream
/// starts, for `EPOLLRDHUP | EPOLLHUP | EPOLLERR`, edge-triggered; the event's data is the
/// subscriber's id, looked up in the transport's stream table (an id is never reused, so a
/// reused descriptor cannot reach the wrong stream). The registration is removed in the
/// response's free callback, before libmicrohttpd closes the descriptor.
///
/// The rule for a peer that closed its sending side:
/// - `EPOLLHUP` or `EPOLLERR` (a reset, or a write answered by a reset): the peer is gone; the
///   stream is failed at once (a suspended connection is resumed so its reader closes it).
/// - `EPOLLRDHUP` alone (a FIN): TCP cannot tell a closed socket from a half-closed reader
///   (`shutdown(SHUT_WR)`) without writing to it, and the socket cannot be read while
///   libmicrohttpd owns it. The stream gets one probe, an empty SSE comment (`:` and a blank
///   line), written at once if nothing is pending. A closed socket answers it with a reset, which
///   arrives as `EPOLLHUP | EPOLLERR` one round trip later, and the stream is failed then; a
///   half-closed reader reads the comment, which every SSE client ignores, and keeps its
///   stream. One probe per stream: later events on a half-closed reader's socket change nothing.
///
/// Once a second the thread also runs a release pass (``IdleRegionOwner/visitIdle(pageSize:_:)``) over
/// the streams that suspended since they were last visited: a stream seen suspended by two
/// passes in a row (so idle for at least a second) has the whole pages of the write region its
/// reader was last handed given back with `madvise(MADV_DONTNEED)`, under the subscriber's lock
/// and only while it is still suspended. Idle streams already given back are not visited again,
/// and a stream whose pages given back were not touched since (a heartbeat or a small event
/// writes only the region's first, partial page) is not even listed when it suspends again, so
/// the pass costs nothing while nothing happens and O(streams that wrote a lot) after a heartbeat.
final class PeerWatcher: @unchecked Sendable {
    // @unchecked Sendable: the descriptors are set once in `init` and closed once in `stop()`,
    // after every registration has been removed; `thread` is written in `init` and read in
    // `stop()` only.
    private let epollFD: Int32
    /// A pipe whose write end ``stop()`` writes to, registered with the epoll instance.
    private let stopPipe: (read: Int32, write: Int32)
    private var thread = pthread_t()
    private let lookup: @Sendable (UInt64) -> Subscriber?
    /// Streams the next release pass visits: listed by their reader when they suspend (once
    /// until a pass drops them), so a pass costs nothing once every idle stream has been visited.
    private let candidates = Mutex<[StreamSocket]>([])
    private let probe = Frame(bytes: EventEncoder.comment(""), isEvent: false)
    private let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    private let stopped = Atomic<Bool>(false)

    /// Streams failed because their peer was gone, and FINs seen (each may have queued a probe).
    let peersGone = Atomic<Int>(0)
    let finsSeen = Atomic<Int>(0)

    /// Bytes given back by this watcher's release passes.
    let releasedBytes = Atomic<Int>(0)
    /// Write regions given back by this watcher's release passes.
    let releasedRegions = Atomic<Int>(0)

    private static let stopToken = UInt64.max
    /// Milliseconds between release passes; a region is given back on the second pass that
    /// finds its stream still suspended.
    static let releaseIntervalMilliseconds = 1_000

    /// Starts the watcher thread, or returns nil when the kernel refuses an epoll instance, a
    /// pipe or a thread (the transport then works as before, without it).
    init?(lookup: @escaping @Sendable (UInt64) -> Subscriber?) {
        self.lookup = lookup
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        stopPipe = (fds[0], fds[1])
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        epollFD = msse_shim_epoll_create()
        let retained = Unmanaged.passRetained(self)
        guard epollFD >= 0,
            msse_shim_epoll_watch_readable(epollFD, stopPipe.read, Self.stopToken) == 0,
            pthread_create(&thread, nil, peerWatcherMain, retained.toOpaque()) == 0
        else {
            retained.release()
            if epollFD >= 0 { close(epollFD) }
            close(stopPipe.read)
            close(stopPipe.write)
            return nil
        }
    }

    /// Watches a stream's socket; `token` is its subscriber's id. Call once, at stream start.
    @discardableResult
    func watch(fd: Int32, token: UInt64) -> Bool {
        msse_shim_epoll_watch_peer(epollFD, fd, token) == 0
    }

    /// Lists a stream that has just suspended for the next release pass (its reader calls this
    /// under the subscriber's lock, at most once until a pass drops it).
    func list(_ stream: StreamSocket) {
        candidates.withLock { $0.append(stream) }
    }

    /// Stops watching a stream's socket. Call before the descriptor is closed.
    func unwatch(fd: Int32) {
        _ = msse_shim_epoll_unwatch(epollFD, fd)
    }

    /// Ends the thread and closes the descriptors. Call once no stream is registered any more
    /// (after `MHD_stop_daemon` has returned: it runs every remaining free callback).
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var one: UInt8 = 1
        _ = write(stopPipe.write, &one, 1)
        pthread_join(thread, nil)
        close(epollFD)
        close(stopPipe.read)
        close(stopPipe.write)
        // The streams still listed hold their transport, which holds this watcher.
        candidates.withLock { $0 = [] }
    }

    fileprivate func run() {
        var events = [msse_shim_epoll_event](repeating: msse_shim_epoll_event(), count: 256)
        var nextPass = Clocks.monotonicMilliseconds() + UInt64(Self.releaseIntervalMilliseconds)
        while true {
            let now = Clocks.monotonicMilliseconds()
            if now >= nextPass {
                releasePass()
                nextPass = now + UInt64(Self.releaseIntervalMilliseconds)
            }
            let timeout = Int32(clamping: nextPass - min(nextPass, Clocks.monotonicMilliseconds()))
            let n = events.withUnsafeMutableBufferPointer {
                msse_shim_epoll_wait(epollFD, $0.baseAddress, Int32($0.count), timeout)
            }
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            for event in events[..<Int(n)] {
                if event.token == Self.stopToken { return }
                handle(event.mask, token: event.token)
            }
        }
    }

    private func handle(_ mask: UInt32, token: UInt64) {
        guard let subscriber = lookup(token) else { return }
        if mask & UInt32(MSSE_SHIM_PEER_GONE) != 0 {
            peersGone.add(1, ordering: .relaxed)
            subscriber.fail()
        } else if mask & UInt32(MSSE_SHIM_PEER_CLOSED_SENDING) != 0 {
            finsSeen.add(1, ordering: .relaxed)
            subscriber.probePeer(probe)
        }
    }

    private func releasePass() {
        let visiting = candidates.withLock { list in
            defer { list = [] }
            return list
        }
        var kept: [StreamSocket] = []
        for stream in visiting {
            let (released, keep) = stream.visitIdle(pageSize: pageSize) { address, count in
                if let start = UnsafeMutableRawPointer(bitPattern: address) { _ = madvise(start, count, MADV_DONTNEED) }
            }
            if released > 0 {
                releasedBytes.add(released, ordering: .relaxed)
                releasedRegions.add(1, ordering: .relaxed)
            }
            if keep { kept.append(stream) }
        }
        if !kept.isEmpty { candidates.withLock { $0.append(contentsOf: kept) } }
    }
}

private func peerWatcherMain(_ argument: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let argument else { return nil }
    let watcher = Unmanaged<PeerWatcher>.fromOpaque(argument).takeRetainedValue()
    watcher.run()
    return nil
}
