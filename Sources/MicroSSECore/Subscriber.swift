import MicroSSEWire
import Synchronization

/// One connected stream as the brokers see it: its pure queue (``SubscriberQueue``) behind a short
/// lock, and the transport's object for it (``StreamConnection``), which it asks to resume, cut
/// or write, and whose sections it brackets under the same lock.
///
/// Publishers (any thread) call ``enqueue(_:)``; the transport's content reader calls
/// ``read(into:directBudget:whileLocked:)`` on its thread. The connection is attached by the
/// transport before it can ever suspend, so an enqueue never needs a wake that cannot be delivered.
package final class Subscriber: Sendable {
    /// A process-unique number for this stream.
    package let id: UInt64
    /// The channels this stream receives (empty for a private stream).
    package var channels: [ChannelName] {
        switch channelList {
        case .one(let name): [name]
        case .list(let names): names
        }
    }
    /// Most streams name one channel: held inline, it costs no array of its own (``channels``
    /// builds one per call: brokers call it to subscribe and unsubscribe, never per event).
    private enum ChannelList {
        case one(ChannelName)
        case list([ChannelName])
    }
    private let channelList: ChannelList
    /// How many channels the stream receives (no array made).
    package var channelCount: Int {
        switch channelList {
        case .one: 1
        case .list(let names): names.count
        }
    }
    /// The most bytes this stream may have pending (its queue's bound).
    package let limit: Int
    /// What the queue's lock guards: the queue, and the connection whose sections it brackets
    /// (the object ``hooks`` holds, referenced here too so a section costs no second lock).
    private struct Locked {
        var queue: SubscriberQueue
        var connection: (any StreamConnection)?
    }
    private let queue: Mutex<Locked>
    /// Whether the attached connection can be written while suspended (see ``published()``).
    /// Declared here, it takes a byte of the queue's last word instead of a word of its own.
    let flushable = Atomic<Bool>(false)
    /// Whether a resume's replay is still being read (``refillReplay(target:)``), readable without the lock.
    let replaying = Atomic<Bool>(false)
    /// Whether a resume's replay is queued whole, not read through a cursor (a subscriber no
    /// transport reads, whose reader takes its replay at once). Next to the flags above, it
    /// takes a byte of their word.
    package let wholeReplay: Bool
    /// Whether a resume's replay is still being read (a hint, read without the lock: the
    /// transport paces a replaying stream's writes by it).
    package var isReplaying: Bool { replaying.load(ordering: .relaxed) }
    let hooks: Mutex<(any StreamConnection)?>
    /// The ticker's set this stream enters whenever it has bytes pending (nil: no ticker).
    let pending: PendingStreams?
    /// What the publisher of a channel log reads of this stream without its lock (see
    /// ``logView``), stored after every change under the lock: the log position read up to, and
    /// the bytes queued here with the queue's flags.
    private let mirroredPosition = Atomic<UInt64>(0)
    private let mirroredState = Atomic<UInt64>(0)

    private static let nextID = Atomic<UInt64>(1)

    /// A stream of `channels` that may have at most `limit` bytes pending. With `pending`, the
    /// stream lists itself there whenever it has bytes pending (see ``PendingStreams``).
    package init(channels: [ChannelName], limit: Int, pending: PendingStreams? = nil, wholeReplay: Bool = false) {
        self.wholeReplay = wholeReplay
        self.id = Self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        self.channelList = channels.count == 1 ? .one(channels[0]) : .list(channels)
        self.limit = limit
        self.queue = Mutex(Locked(queue: SubscriberQueue(limit: limit), connection: nil))
        self.hooks = Mutex(nil)
        self.pending = pending
    }

    /// Runs `body` under the queue's lock, then mirrors what a log publisher reads. With a
    /// connection attached, the section starts with its ``StreamConnection/enterSection()``
    /// (which may hand over the rest of a chunk the transport wrote by itself, e.g. a heartbeat)
    /// and ends with its ``StreamConnection/leaveSection(idle:active:)``, telling the transport
    /// whether it may write to the stream by itself now (`activity`: the section counts as the
    /// stream's activity, which spares it the next heartbeat).
    func locked<R>(activity: Bool = true, _ body: (inout SubscriberQueue) -> R) -> R {
        // The connection is called in place, never bound to a local: a call on the locked
        // value borrows it, a local copy costs a retain and a release per section (measured in
        // the fan-out profile: 8% of the server's CPU).
        queue.withLock { s in
            if let rest = s.connection?.enterSection(), rest > 0 { s.queue.noteUnsent(rest) }
            let result = body(&s.queue)
            mirror(s.queue)
            let active = activity || s.queue.delivered
            s.queue.delivered = false
            s.connection?.leaveSection(idle: s.queue.heartbeatable, active: active)
            return result
        }
    }

    /// A section under the queue's lock for the transport's own bookkeeping of this stream (an
    /// idle stream's pages given back): `body` sees the queue as every section does.
    package func withQueue<R>(_ body: (inout SubscriberQueue) -> R) -> R {
        locked(activity: false, body)
    }

    private func mirror(_ q: borrowing SubscriberQueue) {
        mirroredPosition.store(q.cursor.position, ordering: .relaxed)
        mirroredState.store(LogView.state(q), ordering: .releasing)
    }

    /// The mirrored state of a reader that found nothing to write, stored at once, under the
    /// log's lock (see ``SubscriberQueue/read(into:directBudget:write:whileWaiting:)``): waiting, nothing queued,
    /// no resume on its way.
    private func waitingMark(listed: Bool) -> UInt64 {
        LogView.waitingBit | (listed ? LogView.listedBit : 0)
    }

    /// What the publisher of this stream's channel log reads without the queue's lock.
    package var logView: LogView {
        LogView(
            position: mirroredPosition.load(ordering: .relaxed), state: mirroredState.load(ordering: .acquiring))
    }

    /// Lists the stream in its pending set if it has bytes pending and is not listed yet.
    /// Call under the queue's lock, after anything that may have queued bytes.
    func listIfPending(_ q: inout SubscriberQueue) {
        if let pending, q.takePendingListing() { pending.insert(self) }
    }

    /// Installs the stream's connection: how to resume it when suspended, how to cut it, and
    /// what brackets each section (see ``StreamConnection``). One reference per stream, no
    /// closure: the transport's per-stream object is the connection. ``detach()`` removes it.
    package func attach(_ connection: any StreamConnection) {
        hooks.withLock { $0 = connection }
        flushable.store(connection.writesWhileSuspended, ordering: .relaxed)
        queue.withLock { $0.connection = connection }
    }

    /// Queues a frame. Returns what happened; a needed wake-up has already been done when
    /// `deferWake` is false, otherwise the caller must call ``wake()`` after releasing its locks.
    /// An overflow of a connection that is not suspended cuts the connection at once.
    @discardableResult
    package func enqueue(_ frame: Frame, deferWake: Bool = false) -> SubscriberQueue.EnqueueAction {
        let action = locked { q in
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

    /// Cuts the connection of a failed stream (see ``StreamConnection/cut()``).
    func cut() {
        hooks.withLock { $0?.cut() }
    }

    /// Resumes the suspended connection. Call only after an action said so: exactly once per suspend.
    package func wake() {
        // Called outside the lock: resuming takes the transport's locks, and ``detach()`` (which
        // takes this lock) may run inside them.
        let connection = hooks.withLock { $0 }
        connection?.resume()
    }

    /// A read into `out`, suspending through `onSuspend` (see
    /// ``read(into:directBudget:whileLocked:)``; big log frames go to a connection that writes
    /// while suspended up to `out.count` bytes at a time).
    package func read(into out: UnsafeMutableRawBufferPointer, onSuspend: () -> Void) -> SubscriberQueue.ReadAction {
        read(into: out, directBudget: 1) { _, action in
            if action == .suspend { onSuspend() }
        }
    }

    /// Called by the transport's content reader. See
    /// ``SubscriberQueue/read(into:directBudget:write:whileWaiting:)``: when the stream reads a
    /// channel log, its waiting mark is mirrored under the log's lock, so a publisher that
    /// appends next sees it and wakes the stream (nothing is queued then and no resume is on its
    /// way). `directBudget` bounds a direct write of big log frames to a connection that writes
    /// while suspended (0: none). `whileLocked` runs under the queue's lock with the answer: the
    /// transport suspends the connection there on `.suspend`, so it is suspended before any
    /// publisher can see it waiting and resume it.
    package func read(
        into out: UnsafeMutableRawBufferPointer, directBudget: Int,
        whileLocked: (inout SubscriberQueue, SubscriberQueue.ReadAction) -> Void
    ) -> SubscriberQueue.ReadAction {
        refillReplay(target: out.count)
        let budget = flushable.load(ordering: .relaxed) ? directBudget : 0
        // A read counts as the stream's activity only when it delivers events (not a heartbeat).
        var rewake = false
        defer { if rewake { wake() } }
        return locked(activity: false) {
            let mark = waitingMark(listed: $0.listedPending)
            // Lock order: the queue's, then the hooks' (as for a flush).
            let action = $0.read(
                into: out, directBudget: budget,
                write: { parts, events in
                    hooks.withLock { $0?.writeWhileSuspended(parts: parts, events: events) ?? .unavailable }
                },
                whileWaiting: { mirroredState.store(mark, ordering: .releasing) })
            whileLocked(&$0, action)
            if action != .suspend { listIfPending(&$0) }
            // The replay's next frames came in after its source answered `.waiting`.
            if action == .suspend && $0.replayArrived && $0.replay != nil { rewake = $0.takeWaiting() }
            return action
        }
    }

    /// Ends the stream gracefully once what is queued is written.
    package func finish() {
        if locked({ $0.finish() }) { wake() }
    }

    /// Ends the stream at once, dropping what is queued.
    package func fail() {
        if locked({ $0.fail() }) { wake() } else { cut() }
    }

    /// Makes this stream read `log` from its end on (see ``ChannelLog``). Call under the lock
    /// that orders the log's appends, so no event falls between what was queued and the log.
    package func attach(log: ChannelLog) {
        locked { $0.attach(log) }
    }

    /// Fails the stream when what it has pending, the log's backlog included, is over its bound
    /// (a publisher saw it over in ``logView``).
    package func failIfOver() {
        let (failed, needsWake) = locked { $0.failIfOver() }
        if needsWake {
            wake()
        } else if failed {
            cut()
        } else {
            // A stale hint (the cursor moved on since): it may be waiting for this very event.
            published()
        }
    }

    /// Lists the stream in its pending set when it has bytes pending and is not listed yet (a
    /// publisher saw it behind, neither suspended nor about to read).
    package func listIfPending() {
        locked { listIfPending(&$0) }
    }

    /// Marks the stream closed because its connection is gone (the transport's free callback).
    /// Unlike ``fail()`` it never resumes the connection: there is none left to resume, and the
    /// callback may run inside the transport's own locks. Later enqueues answer `.closed`.
    package func detach() {
        hooks.withLock { $0 = nil }
        locked { _ = $0.fail() }
        queue.withLock { $0.connection = nil }
    }

    /// Bytes that can still be queued before the stream is over its bound.
    package var freeBytes: Int { queue.withLock { $0.queue.freeBytes } }

    /// Bytes queued and not yet written.
    package var pendingBytes: Int { queue.withLock { $0.queue.pendingBytes } }

    /// Whether the stream was disconnected for falling behind.
    package var wasDropped: Bool { queue.withLock { $0.queue.dropped } }

    /// Whether the stream is still open (not ending or ended).
    package var isOpen: Bool { queue.withLock { $0.queue.phase == .open } }
}

/// What the publisher of a channel log reads of one of its subscribers without the subscriber's
/// lock (``Subscriber/logView``): a hint, acted on under the lock (a stale hint costs at most a
/// lock taken for nothing; a suspend is mirrored before any append can miss it).
package struct LogView: Sendable {
    /// The log position the stream has read up to.
    package let position: UInt64
    let state: UInt64

    static let waitingBit: UInt64 = 1
    static let wokenBit: UInt64 = 2
    static let listedBit: UInt64 = 4
    static let failedBit: UInt64 = 8

    /// Suspended, waiting for something to write.
    package var waiting: Bool { state & Self.waitingBit != 0 }
    /// A resume is on its way to the reader.
    package var woken: Bool { state & Self.wokenBit != 0 }
    /// In its ticker's set of streams with pending bytes.
    package var listed: Bool { state & Self.listedBit != 0 }
    /// Failed: reads nothing more.
    package var failed: Bool { state & Self.failedBit != 0 }
    /// Bytes queued for this stream alone (with the rest of a direct chunk).
    package var queuedBytes: Int { Int(truncatingIfNeeded: state >> 8) }

    static func state(_ q: borrowing SubscriberQueue) -> UInt64 {
        (q.waiting ? waitingBit : 0) | (q.woken ? wokenBit : 0) | (q.listedPending ? listedBit : 0)
            | (q.phase == .failed ? failedBit : 0) | UInt64(q.queuedBytes + q.unsentBytes) << 8
    }
}
