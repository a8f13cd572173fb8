import MicroSSEWire
import Synchronization

/// The in-memory ``EventBroker``: per-channel history bounded by count and bytes, one global
/// sequence of ids, fan-out under one short lock so every subscriber sees publish order.
///
/// Server-assigned ids are decimal numbers from a sequence seeded with the wall clock in
/// microseconds (`next = max(last + 1, now)`), so they increase across channels and do not
/// repeat across restarts unless more than a million events per second are published for the
/// whole uptime.
package final class MemoryBroker: EventBroker {
    package struct Limits: Sendable {
        /// Events kept per channel.
        var historyCount: Int
        /// Encoded bytes kept per channel.
        var historyBytes: Int

        package init(historyCount: Int, historyBytes: Int) {
            self.historyCount = historyCount
            self.historyBytes = historyBytes
        }
    }

    private struct Entry {
        let seq: UInt64
        let id: String
        /// Emptied on eviction, so evicted bytes are freed at once, not at the next compaction.
        var frame: Frame
        let callerGiven: Bool
    }

    private struct Channel {
        var history: [Entry] = []
        var historyHead = 0
        var historyBytes = 0
        /// Resuming from a position below this may have missed events (evicted or pre-restart).
        var floor: UInt64
        /// Caller-given ids still in history, to place a `Last-Event-ID` that is not a number.
        var callerIDs: [String: UInt64] = [:]
        var subscribers: [Subscriber] = []
        var subscriberIndex: [UInt64: Int] = [:]

        var retained: ArraySlice<Entry> { history[historyHead...] }

        /// Appends and evicts over the limits; calls `evicted` with each evicted caller-given id.
        mutating func append(_ entry: Entry, limits: Limits, evicted: (String, UInt64) -> Void) {
            history.append(entry)
            historyBytes += entry.frame.bytes.count
            if entry.callerGiven { callerIDs[entry.id] = entry.seq }
            while history.count - historyHead > limits.historyCount
                || (historyBytes > limits.historyBytes && historyHead < history.count)
            {
                let old = history[historyHead]
                history[historyHead].frame = MemoryBroker.evictedFrame
                historyHead += 1
                historyBytes -= old.frame.bytes.count
                floor = old.seq
                if old.callerGiven, callerIDs[old.id] == old.seq {
                    callerIDs[old.id] = nil
                    evicted(old.id, old.seq)
                }
            }
            if historyHead > 64 && historyHead * 2 > history.count {
                history.removeFirst(historyHead)
                historyHead = 0
            }
        }

        mutating func add(_ s: Subscriber) {
            subscriberIndex[s.id] = subscribers.count
            subscribers.append(s)
        }

        mutating func remove(_ s: Subscriber) {
            guard let i = subscriberIndex.removeValue(forKey: s.id) else { return }
            let last = subscribers.removeLast()
            if i < subscribers.count {
                subscribers[i] = last
                subscriberIndex[last.id] = i
            }
        }
    }

    private struct State {
        var channels: [ChannelName: Channel] = [:]
        var lastSeq: UInt64
        let bootSeq: UInt64
        var closed = false
        /// Caller-given ids evicted from history, remembered (boundedly) so that a client
        /// resuming from one is placed where it really was, not read as a sequence number.
        var evictedCallerIDs: [String: UInt64] = [:]
        var evictedOrder: [String] = []
        var evictedHead = 0

        mutating func rememberEvicted(_ id: String, _ seq: UInt64) {
            if evictedCallerIDs.updateValue(seq, forKey: id) == nil { evictedOrder.append(id) }
            if evictedOrder.count - evictedHead > MemoryBroker.evictedCallerIDLimit {
                let oldest = evictedOrder[evictedHead]
                evictedHead += 1
                evictedCallerIDs[oldest] = nil
            }
            if evictedHead > 1_024 && evictedHead * 2 > evictedOrder.count {
                evictedOrder.removeFirst(evictedHead)
                evictedHead = 0
            }
        }
    }

    /// What an evicted history slot holds until the array is compacted.
    private static let evictedFrame = Frame(bytes: [], isEvent: true)

    /// How many evicted caller-given ids are remembered for resume.
    package static let evictedCallerIDLimit = 65_536

    private let limits: Limits
    private let now: @Sendable () -> UInt64
    private let state: Mutex<State>

    /// - Parameter now: the wall clock in microseconds (injectable for tests).
    package init(limits: Limits, now: @escaping @Sendable () -> UInt64 = Clocks.wallMicroseconds) {
        self.limits = limits
        self.now = now
        let boot = now()
        self.state = Mutex(State(lastSeq: boot &- 1, bootSeq: boot))
    }

    package func publish(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> String {
        // Encode outside the lock; only a server-assigned `id:` line is added under it (the
        // encoder writes `id:` first, so the frame is that line followed by these bytes).
        let body = EventEncoder.encode(event)
        let clock = now()
        var wakes: [Subscriber] = []
        let id = try state.withLock { (s: inout State) throws(MicroSSEError) -> String in
            guard !s.closed else { throw MicroSSEError(.unavailable, "the server is shutting down") }
            let seq = max(s.lastSeq &+ 1, clock)
            s.lastSeq = seq
            let id = event.id ?? String(seq)
            let frame = Frame(bytes: event.id == nil ? Self.idLine(id) + body : body, isEvent: true)
            let bootSeq = s.bootSeq
            var evicted: [(String, UInt64)] = []
            s.channels[channel, default: Channel(floor: bootSeq)].append(
                Entry(seq: seq, id: id, frame: frame, callerGiven: event.id != nil), limits: limits
            ) { evicted.append(($0, $1)) }
            for (id, seq) in evicted { s.rememberEvicted(id, seq) }
            // The channel's array keeps every subscriber alive while the lock is held: enqueue
            // through unretained references (no retain/release per subscriber per event).
            s.channels[channel]!.subscribers.withUnsafeBufferPointer { subs in
                for i in subs.indices {
                    let woke = Unmanaged.passUnretained(subs[i])._withUnsafeGuaranteedRef { sub -> Bool in
                        switch sub.enqueue(frame, deferWake: true) {
                        case .wake, .overflow(wake: true): return true
                        default: return false
                        }
                    }
                    if woke { wakes.append(subs[i]) }
                }
            }
            return id
        }
        // Resume outside the lock: libmicrohttpd takes its own locks in resume.
        for sub in wakes { sub.wake() }
        return id
    }

    /// The `id: <id>` line that starts the frame of an event with a server-assigned id.
    private static func idLine(_ id: String) -> [UInt8] {
        var line: [UInt8] = Array("id: ".utf8)
        line += id.utf8
        line.append(0x0A)
        return line
    }

    package func subscribe(_ subscriber: Subscriber, after lastEventID: String?) -> ResumeStatus {
        state.withLock { s in
            guard !s.closed else { return .fresh }
            let status = resume(subscriber, after: lastEventID, in: &s)
            let bootSeq = s.bootSeq
            for name in subscriber.channels {
                s.channels[name, default: Channel(floor: bootSeq)].add(subscriber)
            }
            return status
        }
        // No wake needed: a new subscriber's connection has never suspended.
    }

    /// Queues the gap event and the replay for `lastEventID`; caller holds the lock.
    ///
    /// The id is placed as a caller-given id still retained in one of the subscriber's channels,
    /// else as a recently evicted caller-given id, else as a number from this broker's sequence
    /// (at most `lastSeq`, and at least half the boot position: server ids are microsecond
    /// timestamps, so a small number such as a caller's `17` is never read as one); anything
    /// else is `unknown` and nothing is replayed (the broker cannot tell what the client has). A placed
    /// position is exact when no subscribed channel has evicted an event after it (each
    /// channel's `floor` is the last evicted position, or the boot position); otherwise the
    /// stream gets an `evicted` gap and every retained event after the position. A replay
    /// larger than the subscriber's byte bound keeps its newest events and reports `evicted`
    /// too, instead of failing the stream on arrival (which would fail every reconnect).
    private func resume(_ sub: Subscriber, after lastEventID: String?, in s: inout State) -> ResumeStatus {
        guard let lastEventID else { return .fresh }
        var position: UInt64?
        for name in sub.channels {
            if let seq = s.channels[name]?.callerIDs[lastEventID] {
                position = seq
                break
            }
        }
        if position == nil, let seq = s.evictedCallerIDs[lastEventID] {
            position = seq
        }
        if position == nil, let n = UInt64(lastEventID), n <= s.lastSeq, n >= s.bootSeq / 2 {
            position = n
        }
        guard let position else {
            sub.enqueue(ResumeStatus.gapFrame(lastEventID: lastEventID, reason: .unknown))
            return .gap(.unknown)
        }
        var missed = false
        var replay: [Entry] = []
        for name in sub.channels {
            let channel = s.channels[name]
            if position < (channel?.floor ?? s.bootSeq) { missed = true }
            guard let channel else { continue }
            for entry in channel.retained.reversed() {
                if entry.seq <= position { break }
                replay.append(entry)
            }
        }
        replay.sort { $0.seq < $1.seq }
        let gap = ResumeStatus.gapFrame(lastEventID: lastEventID, reason: .evicted)
        let room = sub.freeBytes
        var first = replay.count
        var total = 0
        while first > 0 && total + replay[first - 1].frame.bytes.count <= room - gap.bytes.count {
            total += replay[first - 1].frame.bytes.count
            first -= 1
        }
        if first > 0 { missed = true }
        if missed { sub.enqueue(gap) }
        for entry in replay[first...] { sub.enqueue(entry.frame) }
        return missed ? .gap(.evicted) : .exact
    }

    package func unsubscribe(_ subscriber: Subscriber) {
        state.withLock { s in
            for name in subscriber.channels {
                s.channels[name]?.remove(subscriber)
                // A channel that never held an event is forgotten with its last subscriber; one
                // that did keeps its floor, so resume stays exact about what was evicted.
                if let c = s.channels[name], c.subscribers.isEmpty, c.history.isEmpty, c.floor == s.bootSeq {
                    s.channels[name] = nil
                }
            }
        }
    }

    package func shutdown() {
        state.withLock { $0.closed = true }
    }

    package var channelCount: Int { state.withLock { $0.channels.count } }
}
