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
/// Once a second the thread also runs a release pass (``Subscriber/visitIdle(pageSize:_:)``) over
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
    private let candidates = Mutex<[Subscriber]>([])
    private let probe = Frame(bytes: EventEncoder.comment(""), isEvent: false)
    private let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    private let stopped = Atomic<Bool>(false)

    /// Streams failed because their peer was gone, and FINs seen (each may have queued a probe).
    let peersGone = Atomic<Int>(0)
    let finsSeen = Atomic<Int>(0)

    /// Bytes given back by release passes since the process started (every watcher).
    static let releasedBytes = Atomic<Int>(0)
    /// Write regions given back since the process started (every watcher).
    static let releasedRegions = Atomic<Int>(0)

    private static let stopToken = UInt64.max
    /// Milliseconds between release passes; a region is given back on the second pass that
    /// finds its stream still suspended.
    static let releaseIntervalMilliseconds = 1_000

    /// Starts the watcher thread, or returns nil when the kernel refuses an epoll instance, a
    /// pipe or a thread (the transport then works as before, without it).
    init?(lookup: @escaping @Sendable (UInt64) -> Subscriber?) {
        self.lookup = lookup
        var fds: [Int32] = [-1, -1]
        guard let epoll = Epoll.functions, pipe(&fds) == 0 else { return nil }
        stopPipe = (fds[0], fds[1])
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        epollFD = epoll.create(Epoll.cloexec)
        let retained = Unmanaged.passRetained(self)
        guard epollFD >= 0,
            Epoll.control(epollFD, Epoll.add, stopPipe.read, events: Epoll.readable, token: Self.stopToken),
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
        Epoll.control(
            epollFD, Epoll.add, fd, events: Epoll.peerClosed | Epoll.hangUp | Epoll.error | Epoll.edgeTriggered,
            token: token)
    }

    /// Lists a stream that has just suspended for the next release pass (its reader calls this
    /// under the subscriber's lock, at most once until a pass drops it).
    func list(_ subscriber: Subscriber) {
        candidates.withLock { $0.append(subscriber) }
    }

    /// Stops watching a stream's socket. Call before the descriptor is closed.
    func unwatch(fd: Int32) {
        _ = Epoll.control(epollFD, Epoll.delete, fd, events: 0, token: 0)
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
    }

    fileprivate func run() {
        let capacity = 256
        var buffer = [UInt8](repeating: 0, count: capacity * Epoll.eventSize)
        var nextPass = Clocks.monotonicMilliseconds() + UInt64(Self.releaseIntervalMilliseconds)
        while true {
            let now = Clocks.monotonicMilliseconds()
            if now >= nextPass {
                releasePass()
                nextPass = now + UInt64(Self.releaseIntervalMilliseconds)
            }
            let timeout = Int32(clamping: nextPass - min(nextPass, Clocks.monotonicMilliseconds()))
            let n = buffer.withUnsafeMutableBytes { Epoll.wait(epollFD, $0, timeout: timeout) }
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            for i in 0..<n {
                let (mask, token) = buffer.withUnsafeBytes { Epoll.event(at: i, in: $0) }
                if token == Self.stopToken { return }
                handle(mask, token: token)
            }
        }
    }

    private func handle(_ mask: UInt32, token: UInt64) {
        guard let subscriber = lookup(token) else { return }
        if mask & (Epoll.hangUp | Epoll.error) != 0 {
            peersGone.add(1, ordering: .relaxed)
            subscriber.fail()
        } else if mask & Epoll.peerClosed != 0 {
            finsSeen.add(1, ordering: .relaxed)
            subscriber.probePeer(probe)
        }
    }

    private func releasePass() {
        let visiting = candidates.withLock { list in
            defer { list = [] }
            return list
        }
        var kept: [Subscriber] = []
        for subscriber in visiting {
            let (released, keep) = subscriber.visitIdle(pageSize: pageSize) { start, count in
                _ = madvise(start, count, MADV_DONTNEED)
            }
            if released > 0 {
                Self.releasedBytes.add(released, ordering: .relaxed)
                Self.releasedRegions.add(1, ordering: .relaxed)
            }
            if keep { kept.append(subscriber) }
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

/// epoll, which Swift's Glibc module does not import (`sys/epoll.h` is not in it): the three
/// functions are looked up once with `dlsym` and called through C function pointers, and
/// `struct epoll_event` is read and written at its C offsets (packed on x86-64, where `data`
/// follows `events` at offset 4; naturally aligned elsewhere, at offset 8).
private enum Epoll {
    typealias Create = @convention(c) (Int32) -> Int32
    typealias Control = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    typealias Wait = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32

    struct Functions: @unchecked Sendable {
        // @unchecked Sendable: C function pointers into the C library, immutable.
        let create: Create
        let control: Control
        let wait: Wait
    }

    static let functions: Functions? = {
        guard let create = dlsym(nil, "epoll_create1"), let control = dlsym(nil, "epoll_ctl"),
            let wait = dlsym(nil, "epoll_wait")
        else { return nil }
        return Functions(
            create: unsafeBitCast(create, to: Create.self), control: unsafeBitCast(control, to: Control.self),
            wait: unsafeBitCast(wait, to: Wait.self))
    }()

    // Values from the Linux UAPI (sys/epoll.h).
    static let readable: UInt32 = 0x001  // EPOLLIN
    static let error: UInt32 = 0x008  // EPOLLERR
    static let hangUp: UInt32 = 0x010  // EPOLLHUP
    static let peerClosed: UInt32 = 0x2000  // EPOLLRDHUP
    static let edgeTriggered: UInt32 = 1 << 31  // EPOLLET
    static let cloexec: Int32 = 0o2_000_000  // EPOLL_CLOEXEC (O_CLOEXEC)
    static let add: Int32 = 1  // EPOLL_CTL_ADD
    static let delete: Int32 = 2  // EPOLL_CTL_DEL

    #if arch(x86_64)
        static let eventSize = 12
        static let dataOffset = 4
    #else
        static let eventSize = 16
        static let dataOffset = 8
    #endif

    static func control(_ epollFD: Int32, _ op: Int32, _ fd: Int32, events: UInt32, token: UInt64) -> Bool {
        guard let functions else { return false }
        var event = [UInt8](repeating: 0, count: eventSize)
        return event.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: events, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: token, toByteOffset: dataOffset, as: UInt64.self)
            return functions.control(epollFD, op, fd, raw.baseAddress) == 0
        }
    }

    /// Waits for events into `buffer` (room for `buffer.count / eventSize` events).
    static func wait(_ epollFD: Int32, _ buffer: UnsafeMutableRawBufferPointer, timeout: Int32) -> Int {
        guard let functions else { return -1 }
        return Int(functions.wait(epollFD, buffer.baseAddress, Int32(buffer.count / eventSize), timeout))
    }

    /// The mask and token of the `index`th event in `buffer`.
    static func event(at index: Int, in buffer: UnsafeRawBufferPointer) -> (mask: UInt32, token: UInt64) {
        let base = index * eventSize
        return (
            buffer.loadUnaligned(fromByteOffset: base, as: UInt32.self),
            buffer.loadUnaligned(fromByteOffset: base + dataOffset, as: UInt64.self)
        )
    }
}
