import MicroSSEWire
import Synchronization

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
    /// Writes `bytes` (one whole frame, a heartbeat) to the socket of the suspended connection
    /// now, without resuming it: the transport frames and sends them itself. Called only while
    /// the connection is suspended and no resume has been asked for, under the subscriber's
    /// queue lock and then its hooks lock (so nothing else writes to the socket, and `detach`,
    /// which runs before the socket is closed, waits for it).
    func writeWhileSuspended(_ bytes: [UInt8]) -> SuspendedWrite
}

/// What ``StreamConnection/writeWhileSuspended(_:)`` did.
package enum SuspendedWrite: Sendable, Equatable {
    /// Every byte was written: the connection stays suspended.
    case written
    /// Nothing was written (the connection cannot be written to directly, or its socket buffer
    /// is full): queue the bytes and resume the connection instead.
    case unavailable
    /// The write failed (the peer is gone) or was cut short: the stream cannot go on.
    case failed
}

extension StreamConnection {
    package func writeWhileSuspended(_ bytes: [UInt8]) -> SuspendedWrite { .unavailable }
}

/// One connected stream: its bounded queue behind a short lock, and how to wake its connection.
///
/// Publishers (any thread) call ``enqueue(_:)``; the transport's content reader calls ``read(into:onSuspend:)``
/// on libmicrohttpd's thread. The waker is installed by the transport before the connection can
/// ever suspend, so an enqueue never needs a wake that cannot be delivered.
package final class Subscriber: Sendable {
    /// A process-unique number for this stream.
    package let id: UInt64
    /// The channels this stream receives (empty for a private stream).
    package let channels: [ChannelName]
    private let queue: Mutex<SubscriberQueue>
    private let hooks: Mutex<(any StreamConnection)?>
    /// The ticker's set this stream enters whenever it has bytes pending (nil: no ticker).
    private let pending: PendingStreams?

    /// Functions given as closures (``setWaker(_:)``, ``setCloser(_:)``: tests and tools), held
    /// by a reference: a `Mutex` whose value is a bare function type re-wraps the stored closure
    /// in two reabstraction thunks on every `withLock` (the inout write-back of the generic
    /// value), so each wake-up made the next one longer: measured at 42% of server CPU after
    /// 1,000 events per stream, and a stack overflow waiting to happen on a long-lived stream.
    private final class Callbacks: StreamConnection {
        let waker: (@Sendable () -> Void)?
        let closer: (@Sendable () -> Void)?
        init(waker: (@Sendable () -> Void)?, closer: (@Sendable () -> Void)?) {
            self.waker = waker
            self.closer = closer
        }
        func resume() { waker?() }
        func cut() { closer?() }
    }

    private static let nextID = Atomic<UInt64>(1)

    /// A stream of `channels` that may have at most `limit` bytes pending. With `pending`, the
    /// stream lists itself there whenever it has bytes pending (see ``PendingStreams``).
    package init(channels: [ChannelName], limit: Int, pending: PendingStreams? = nil) {
        self.id = Self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        self.channels = channels
        self.queue = Mutex(SubscriberQueue(limit: limit))
        self.hooks = Mutex(nil)
        self.pending = pending
    }

    /// Lists the stream in its pending set if it has bytes pending and is not listed yet.
    /// Call under the queue's lock, after anything that may have queued bytes.
    private func listIfPending(_ q: inout SubscriberQueue) {
        if let pending, q.takePendingListing() { pending.insert(self) }
    }

    /// Installs the stream's connection: how to resume it when suspended, and how to cut it
    /// (see ``StreamConnection``). One reference per stream, no closure: the transport's
    /// per-stream context is the connection. ``detach()`` removes it.
    package func attach(_ connection: any StreamConnection) {
        hooks.withLock { $0 = connection }
    }

    /// Installs the function that resumes this stream's suspended connection (keeps a closer
    /// installed with ``setCloser(_:)``).
    package func setWaker(_ wake: @escaping @Sendable () -> Void) {
        hooks.withLock { $0 = Callbacks(waker: wake, closer: ($0 as? Callbacks)?.closer) }
    }

    /// Installs the function that cuts the connection (see ``StreamConnection/cut()``; keeps a
    /// waker installed with ``setWaker(_:)``).
    package func setCloser(_ close: @escaping @Sendable () -> Void) {
        hooks.withLock { $0 = Callbacks(waker: ($0 as? Callbacks)?.waker, closer: close) }
    }

    /// Queues a frame. Returns what happened; a needed wake-up has already been done when
    /// `deferWake` is false, otherwise the caller must call ``wake()`` after releasing its locks.
    /// An overflow of a connection that is not suspended cuts the connection at once.
    @discardableResult
    package func enqueue(_ frame: Frame, deferWake: Bool = false) -> SubscriberQueue.EnqueueAction {
        let action = queue.withLock { q in
            let action = q.enqueue(frame)
            listIfPending(&q)
            return action
        }
        switch action {
        case .wake, .overflow(wake: true):
            if !deferWake { wake() }
        case .overflow(wake: false):
            cut()
        case .none, .closed:
            break
        }
        return action
    }

    /// Cuts the connection of a failed stream (see ``setCloser(_:)``).
    private func cut() {
        hooks.withLock { $0?.cut() }
    }

    /// Resumes the suspended connection. Call only after an action said so: exactly once per suspend.
    package func wake() {
        // Called outside the lock: resuming takes libmicrohttpd's locks, and ``detach()`` (which
        // takes this lock) may run inside them.
        let connection = hooks.withLock { $0 }
        connection?.resume()
    }

    /// Called by the transport's content reader. See ``SubscriberQueue/read(into:)``.
    /// `onSuspend` runs under the queue's lock when the answer is `.suspend`, so the connection
    /// is suspended before any publisher can see it waiting and resume it.
    package func read(into out: UnsafeMutableRawBufferPointer, onSuspend: () -> Void) -> SubscriberQueue.ReadAction {
        read(into: out, onSuspend: onSuspend, onListing: {})
    }

    /// ``read(into:onSuspend:)`` that also calls `onListing`, under the queue's lock after
    /// `onSuspend`, when the stream must be added to the release pass's list (see
    /// ``SubscriberQueue/takeListing()``).
    package func read(
        into out: UnsafeMutableRawBufferPointer, onSuspend: () -> Void, onListing: () -> Void
    ) -> SubscriberQueue.ReadAction {
        queue.withLock {
            let action = $0.read(into: out)
            if action == .suspend {
                onSuspend()
                if $0.takeListing() { onListing() }
            } else {
                listIfPending(&$0)
            }
            return action
        }
    }

    /// ``read(into:onSuspend:)`` through one call of `write` (tests, tools).
    package func read(
        max: Int, write: (ArraySlice<UInt8>) -> Void, onSuspend: () -> Void
    ) -> SubscriberQueue.ReadAction {
        queue.withLock {
            let action = $0.read(max: max, write: write)
            if action == .suspend { onSuspend() } else { listIfPending(&$0) }
            return action
        }
    }

    /// Ends the stream gracefully once what is queued is written.
    package func finish() {
        if queue.withLock({ $0.finish() }) { wake() }
    }

    /// Ends the stream at once, dropping what is queued.
    package func fail() {
        if queue.withLock({ $0.fail() }) { wake() } else { cut() }
    }

    /// Periodic liveness work: a heartbeat on an idle stream, failure of a stalled one.
    /// See ``SubscriberQueue/tick(stallTicks:heartbeat:)``.
    @discardableResult
    package func tick(heartbeat: Frame?, stallTicks: Int) -> SubscriberQueue.TickAction {
        let action = tickDeferringWake(heartbeat: heartbeat, stallTicks: stallTicks)
        if action.needsWake { wake() }
        return action
    }

    /// One tick of every stream in `subscribers`, with the resumes batched: first every queue is
    /// ticked (a lock each, no system call), then the connections that need it are resumed back
    /// to back, so libmicrohttpd's polling thread finds them together (each turn of its loop
    /// walks the whole suspended list once, however many were resumed). Returns how many
    /// connections were resumed.
    @discardableResult
    package static func tick(_ subscribers: [Subscriber], heartbeat: Frame?, stallTicks: Int) -> Int {
        var toWake: [Subscriber] = []
        for sub in subscribers where sub.tickDeferringWake(heartbeat: heartbeat, stallTicks: stallTicks).needsWake {
            toWake.append(sub)
        }
        for sub in toWake { sub.wake() }
        return toWake.count
    }

    /// ``tick(heartbeat:stallTicks:)`` without the resume (the caller resumes if `needsWake`);
    /// a stalled stream that is not suspended is cut at once.
    private func tickDeferringWake(heartbeat: Frame?, stallTicks: Int) -> SubscriberQueue.TickAction {
        let action = queue.withLock { q in
            // Lock order: the queue's, then the hooks' (nothing takes them the other way round).
            let action = q.tick(stallTicks: stallTicks, heartbeat: heartbeat) { bytes in
                hooks.withLock { $0?.writeWhileSuspended(bytes) ?? .unavailable }
            }
            listIfPending(&q)
            return action
        }
        if action == .stalled(wake: false) { cut() }
        return action
    }

    /// The ticker's per-second visit of the streams listed in `set` (those that had bytes
    /// pending since the previous visit): a stream that still has bytes pending is ticked
    /// without heartbeat (when `stallTicks` > 0) and stays listed; one that has drained leaves
    /// the set. Resumes are batched as in ``tick(_:heartbeat:stallTicks:)``. Returns how many
    /// streams were visited.
    @discardableResult
    package static func visitPending(_ set: PendingStreams, stallTicks: Int) -> Int {
        let visiting = set.takeAll()
        var toWake: [Subscriber] = []
        for sub in visiting {
            let action = sub.queue.withLock { q -> SubscriberQueue.TickAction in
                var action = SubscriberQueue.TickAction.none
                if stallTicks > 0 && q.pendingBytes > 0 {
                    action = q.tick(stallTicks: stallTicks, heartbeat: nil)
                }
                if q.keepPendingListing() { set.insert(sub) }
                return action
            }
            if action == .stalled(wake: false) { sub.cut() }
            if action.needsWake { toWake.append(sub) }
        }
        for sub in toWake { sub.wake() }
        return visiting.count
    }

    /// The peer closed its sending side (a half-close or a full close): writes `probe` once so a
    /// closed peer answers with a reset while a half-closed reader keeps its stream. See
    /// ``SubscriberQueue/probe(_:)``.
    package func probePeer(_ probe: Frame) {
        let needsWake = queue.withLock { q in
            let needsWake = q.probe(probe)
            listIfPending(&q)
            return needsWake
        }
        if needsWake { wake() }
    }

    /// A release pass's visit (see ``SubscriberQueue/visitIdle()``): gives back to the kernel the
    /// whole pages inside the write region the content reader was last handed, when the
    /// connection has stayed suspended since the previous visit. `release` runs under the queue's
    /// lock, so no reader and no resume can touch the region meanwhile; the pages read as zeros
    /// when next touched. `release` gets the pages' address and size (the transport owns the
    /// memory and turns them into a pointer). Returns the bytes given back and whether to visit
    /// the stream again.
    package func visitIdle(
        pageSize: Int, _ release: (_ address: UInt, _ count: Int) -> Void
    ) -> (released: Int, keep: Bool) {
        queue.withLock { q in
            switch q.visitIdle() {
            case .drop: return (0, false)
            case .keep: return (0, true)
            case .release(let address, let count):
                guard let pages = Self.wholePages(address: address, count: count, pageSize: pageSize),
                    pages.address != 0
                else { return (0, false) }
                assert(
                    pages.address >= address && pages.address + UInt(pages.count) <= address + UInt(count),
                    "released range outside the reader's buffer")
                // Already given back and not written since: nothing to do (no system call).
                if let last = q.untouchedRelease, last == pages { return (0, false) }
                release(pages.address, pages.count)
                q.noteReleased(address: pages.address, count: pages.count)
                return (pages.count, false)
            }
        }
    }

    /// The page-aligned interior of `[address, address + count)`, or nil when it holds no whole page.
    package static func wholePages(address: UInt, count: Int, pageSize: Int) -> (address: UInt, count: Int)? {
        guard pageSize > 0, count > 0 else { return nil }
        let page = UInt(pageSize)
        let (end, overflow) = address.addingReportingOverflow(UInt(count))
        guard !overflow, address <= UInt.max - (page - 1) else { return nil }
        let first = (address + page - 1) / page * page
        let last = end / page * page
        guard last > first else { return nil }
        return (first, Int(last - first))
    }

    /// Marks the stream closed because its connection is gone (the transport's free callback).
    /// Unlike ``fail()`` it never resumes the connection: there is none left to resume, and the
    /// callback may run inside libmicrohttpd's own locks. Later enqueues answer `.closed`.
    package func detach() {
        hooks.withLock { $0 = nil }
        queue.withLock { _ = $0.fail() }
    }

    /// Bytes that can still be queued before the stream is over its bound.
    package var freeBytes: Int { queue.withLock { $0.freeBytes } }

    /// Bytes queued and not yet written.
    package var pendingBytes: Int { queue.withLock { $0.pendingBytes } }

    /// Whether the stream was disconnected for falling behind.
    package var wasDropped: Bool { queue.withLock { $0.dropped } }

    /// Whether the stream is still open (not ending or ended).
    package var isOpen: Bool { queue.withLock { $0.phase == .open } }
}
