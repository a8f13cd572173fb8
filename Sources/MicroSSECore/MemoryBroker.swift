import MicroSSEWire
import Synchronization

/// The in-memory ``EventBroker``: per-channel history bounded by count, bytes and age, all channels
/// together bounded by one memory budget (oldest events of any channel evicted first; channels
/// with no subscribers and nothing retained forgotten), one global sequence of ids, fan-out
/// under one short lock so every subscriber sees publish order.
///
/// Every event gets a position in the broker's one log: its sequence, counted from 1 across all
/// channels, under an epoch drawn at random when the broker is made (so ids from an earlier
/// process are refused, not misplaced). The id it is known by is ``HubID`` of that position, or
/// the publisher's label on streams of its one channel (see docs/DESIGN.md, "Positions, labels
/// and epochs").
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

    /// How many evicted labels (caller-given ids) are remembered for resume, all channels together.
    package static let evictedCallerIDLimit = 65_536
    /// Accounted bytes of remembered evicted caller-given ids, at most.
    package static let evictedCallerIDBytesLimit = 16 << 20
    /// Buckets of forgotten channels' floors (a fixed 32 KiB).
    static let forgottenFloorBuckets = 4_096

    private let limits: Limits
    private let now: @Sendable () -> UInt64
    /// Under it all: the replay cursors read the history through it too.
    let state: Mutex<State>
    /// The epoch of this broker's positions.
    package let epoch: String

    /// - Parameter now: the wall clock in microseconds (injectable for tests).
    package init(limits: Limits, now: @escaping @Sendable () -> UInt64 = Clocks.wallMicroseconds) {
        self.limits = limits
        self.now = now
        self.epoch = HubID.randomEpoch()
        self.state = Mutex(State(lastSeq: 0, bootSeq: 0))
    }

    package func publish(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> String {
        try HubID.checkLabel(event.id)
        // Encode outside the lock; only a server-assigned `id:` line is added under it (the
        // encoder writes `id:` first, so the frame is that line followed by these bytes).
        let body = EventEncoder.encode(event)
        let clock = now()
        var fanOut = LogFanOut()
        let limits = self.limits
        let epoch = self.epoch
        let id = try state.withLock { (s: inout State) throws(MicroSSEError) -> String in
            guard !s.closed else { throw MicroSSEError(.unavailable, "the server is shutting down") }
            let seq = s.lastSeq &+ 1
            s.lastSeq = seq
            let id = event.id ?? HubID.encode(HubPosition(epoch: epoch, major: seq))
            let frame = Frame(bytes: event.id == nil ? Self.idLine(id) + body : body, isEvent: true)
            s.ensureChannel(channel)
            let entry = Entry(seq: seq, publishedAt: clock, id: id, frame: frame, callerGiven: event.id != nil)
            var evicted = Evicted()
            let stored = Self.store(entry, in: &s.channels[channel]!, limits: limits, evicted: &evicted)
            s.settle(channel, freed: evicted.cost)
            s.staleCount += evicted.count
            for (id, seq) in evicted.callerIDs { s.rememberEvicted(LabelKey(channel: stored, label: id), seq) }
            s.order.append(Published(channel: stored, seq: seq, publishedAt: clock))
            s.enforce(budget: limits.memoryBytes, cutoff: limits.cutoff(now: clock))
            guard let c = s.channels[channel] else { return id }
            if c.readers.isEmpty && c.sets.isEmpty {
                s.forgetIfIdle(channel)
                return id
            }
            c.readers.append(frame, into: &fanOut)
            if !c.sets.isEmpty {
                // Streams of several channels see the position, never a label.
                let setFrame = event.id == nil ? frame : entry.frame(for: 2, epoch: epoch)
                for set in c.sets.values { set.readers.append(setFrame, into: &fanOut) }
            }
            return id
        }
        // Resume outside the lock: the transport takes its own locks in resume.
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
            let (status, replay) = resume(subscriber, after: lastEventID, in: &s)
            s.addReader(subscriber)
            // The replay is read through a cursor as the stream drains, due where it joined its log.
            if let replay { subscriber.startReplay(replay) }
            return status
        }
        // No wake needed: a new subscriber's connection has never suspended.
    }

    /// Queues the gap event and the replay for `lastEventID`; caller holds the lock.
    ///
    /// The id is placed only within the subscriber's channels (see ``place(_:channels:in:)``);
    /// one it cannot place is `unknown` and nothing is replayed (the broker cannot tell what the
    /// client has). A placed position is exact when no subscribed channel has evicted an event
    /// after it (each channel's `floor` is the last position it evicted); otherwise, and for a
    /// position of an earlier epoch, the stream gets an `evicted` gap and every retained event
    /// after the position. The replay is not queued here: the returned cursor reads it from the
    /// history as the stream drains (``MemoryReplay``), so a slow resuming stream costs its
    /// cursor, not its replay.
    private func resume(
        _ sub: Subscriber, after lastEventID: String?, in s: inout State
    ) -> (ResumeStatus, MemoryReplay?) {
        guard let lastEventID else { return (.fresh, nil) }
        let channels = sub.channels
        var missed = false
        let position: UInt64
        switch place(lastEventID, channels: channels, in: s) {
        case .unknown:
            sub.enqueue(ResumeStatus.gapFrame(lastEventID: lastEventID, reason: .unknown))
            return (.gap(.unknown), nil)
        case .earlierDataSet:
            missed = true
            position = 0
        case .at(let seq):
            position = seq
        }
        var floor: UInt64 = 0
        var pending = false
        for name in channels {
            let channel = s.channels[name]
            let f = channel?.floor ?? s.absentFloor(name)
            if position < f { missed = true }
            floor = max(floor, f)
            if let last = channel?.retained.last, last.seq > position { pending = true }
        }
        if missed { sub.enqueue(ResumeStatus.gapFrame(lastEventID: lastEventID, reason: .evicted)) }
        let replay =
            pending
            ? MemoryReplay(
                broker: self, channels: channels, after: position, upTo: s.lastSeq, reported: missed ? floor : 0)
            : nil
        return (missed ? .gap(.evicted) : .exact, replay)
    }

    /// Where a `Last-Event-ID` places a stream of `channels`.
    enum Placement: Equatable {
        /// After this position of the current epoch.
        case at(UInt64)
        /// From an earlier data set (another epoch, or an id of this hub from before positions):
        /// everything retained may be new to the client.
        case earlierDataSet
        case unknown
    }

    /// Places `id` within `channels` only: a position in the hub's form (its epoch and offset
    /// checked), else a label in the label table of one of the channels (retained, then
    /// remembered evicted ones; at two different positions it is ambiguous: `unknown`), else an
    /// in-memory id from before positions (a decimal microsecond count, necessarily from an
    /// earlier process), else `unknown`.
    func place(_ id: String, channels: [ChannelName], in s: State) -> Placement {
        if let positions = HubID.decode(id) {
            guard positions.count == 1, let p = positions.first, p.log == 0, p.minor == nil else { return .unknown }
            guard p.epoch == epoch else { return .earlierDataSet }
            return p.major <= s.lastSeq ? .at(p.major) : .unknown
        }
        var found: UInt64?
        for name in channels {
            let seq = s.channels[name]?.callerIDs[id] ?? s.evictedCallerIDs[LabelKey(channel: name, label: id)]
            guard let seq else { continue }
            if let other = found, other != seq { return .unknown }
            found = seq
        }
        if let found { return .at(found) }
        if let legacy = UInt64(id), legacy >= 1_000_000_000_000_000, id.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            return .earlierDataSet
        }
        return .unknown
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
