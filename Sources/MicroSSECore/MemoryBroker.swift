import MicroSSEWire
import Synchronization

/// The in-memory ``EventBroker``: per-channel history bounded by count, bytes and age, all channels
/// together bounded by one memory budget (oldest events of any channel evicted first; channels
/// with no subscribers and nothing retained forgotten), one global sequence of ids, fan-out
/// under one short lock so every subscriber sees publish order.
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
        /// Accounted bytes kept for all channels together (see ``MemoryBroker/accountedBytes``):
        /// over it, the oldest events of every channel are evicted first.
        var memoryBytes: Int
        /// Microseconds an event stays replayable after it was published; 0 = no limit.
        var ttlMicroseconds: UInt64

        package init(historyCount: Int, historyBytes: Int, memoryBytes: Int = .max, ttlSeconds: Int = 0) {
            self.historyCount = historyCount
            self.historyBytes = historyBytes
            self.memoryBytes = memoryBytes
            self.ttlMicroseconds = UInt64(max(0, ttlSeconds)) * 1_000_000
        }

        /// The oldest publish time still replayable at `now` (0 when there is no TTL).
        func cutoff(now: UInt64) -> UInt64 {
            ttlMicroseconds > 0 && now > ttlMicroseconds ? now - ttlMicroseconds : 0
        }
    }

    /// What an evicted history slot holds until the array is compacted.
    static let evictedFrame = Frame(bytes: [], isEvent: true)

    /// How many evicted caller-given ids are remembered for resume.
    package static let evictedCallerIDLimit = 65_536
    /// Accounted bytes of remembered evicted caller-given ids, at most.
    package static let evictedCallerIDBytesLimit = 16 << 20
    /// Buckets of forgotten channels' floors (a fixed 32 KiB).
    static let forgottenFloorBuckets = 4_096

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
        var fanOut = LogFanOut()
        let limits = self.limits
        let id = try state.withLock { (s: inout State) throws(MicroSSEError) -> String in
            guard !s.closed else { throw MicroSSEError(.unavailable, "the server is shutting down") }
            let seq = max(s.lastSeq &+ 1, clock)
            s.lastSeq = seq
            let id = event.id ?? String(seq)
            let frame = Frame(bytes: event.id == nil ? Self.idLine(id) + body : body, isEvent: true)
            s.ensureChannel(channel)
            let entry = Entry(seq: seq, publishedAt: clock, id: id, frame: frame, callerGiven: event.id != nil)
            var evicted = Evicted()
            let stored = Self.store(entry, in: &s.channels[channel]!, limits: limits, evicted: &evicted)
            s.settle(channel, freed: evicted.cost)
            s.staleCount += evicted.count
            for (id, seq) in evicted.callerIDs { s.rememberEvicted(id, seq) }
            s.order.append(Published(channel: stored, seq: seq, publishedAt: clock))
            s.enforce(budget: limits.memoryBytes, cutoff: limits.cutoff(now: clock))
            guard let c = s.channels[channel] else { return id }
            if c.readers.isEmpty && c.sets.isEmpty {
                s.forgetIfIdle(channel)
                return id
            }
            c.readers.append(frame, into: &fanOut)
            for set in c.sets.values { set.readers.append(frame, into: &fanOut) }
            return id
        }
        // Resume outside the lock: libmicrohttpd takes its own locks in resume.
        fanOut.finish()
        return id
    }

    /// What a channel evicted by its own limits while storing an event.
    private struct Evicted {
        var cost = 0
        var count = 0
        var callerIDs: [(String, UInt64)] = []
    }

    /// Appends `entry` to `channel` and evicts over the channel's own limits, in one access to
    /// the channel. Returns the channel's stored name (for the global order).
    private static func store(
        _ entry: Entry, in channel: inout Channel, limits: Limits, evicted: inout Evicted
    ) -> ChannelName {
        channel.append(entry)
        while channel.isOver(limits) {
            let e = channel.evictOldest()
            evicted.cost += e.cost
            evicted.count += 1
            if let callerID = e.callerID { evicted.callerIDs.append(callerID) }
        }
        return channel.name
    }

    /// The `id: <id>` line that starts the frame of an event with a server-assigned id.
    private static func idLine(_ id: String) -> [UInt8] {
        var line: [UInt8] = Array("id: ".utf8)
        line += id.utf8
        line.append(0x0A)
        return line
    }

    package func subscribe(_ subscriber: Subscriber, after lastEventID: String?) -> ResumeStatus {
        let cutoff = limits.cutoff(now: now())
        return state.withLock { s in
            guard !s.closed else { return .fresh }
            // Events past the TTL are evicted first, so a resume from one gets the gap signal.
            if cutoff > 0 { s.enforce(budget: limits.memoryBytes, cutoff: cutoff) }
            let status = resume(subscriber, after: lastEventID, in: &s)
            s.addReader(subscriber)
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
            if position < (channel?.floor ?? s.absentFloor(name)) { missed = true }
            guard let channel else { continue }
            for entry in channel.retained.reversed() {
                if entry.seq <= position { break }
                replay.append(entry)
            }
        }
        replay.sort { $0.seq < $1.seq }
        let reported = sub.enqueueResume(replay.map(\.frame), lastEventID: lastEventID, gap: missed ? .evicted : nil)
        return reported.map { .gap($0) } ?? .exact
    }

    package func unsubscribe(_ subscriber: Subscriber) {
        state.withLock { $0.removeReader(subscriber) }
    }

    package func shutdown() {
        state.withLock { $0.closed = true }
    }

    package var channelCount: Int { state.withLock { $0.channels.count } }

    /// Logs of channel sets read by open streams (see `LogReaders.swift`).
    package var setLogCount: Int { state.withLock { $0.setLogs.count } }

    /// Bytes counted against ``Limits/memoryBytes``: the heap's real chunks for every channel,
    /// retained event and remembered evicted caller-given id, and the containers that hold
    /// them by capacity (see ``HeapSize`` and `State.countContainers()`).
    package var accountedBytes: Int { state.withLock { $0.accountedBytes } }

    /// The part of ``accountedBytes`` that is the containers' own storage (tests).
    package var containerBytes: Int { state.withLock { $0.containersCost } }
}
