import MicroSSECore
import MicroSSEWire
import Synchronization

/// A stream of channels placed on several shards (``ShardedRedisBroker``): each shard's reader
/// hands it the live events of its channels there, and it queues them with its composite id, one
/// position per shard it reads (`~1.<log>.<epoch>.<offset>` per log, in log order), so a
/// `Last-Event-ID` taken from any of its events places it again on every shard.
///
/// Its positions are its own (unlike a set log's, which streams share): after each event the id
/// says, per shard, the newest position of the stream's channels there that it was given. Shards
/// have no common order: a shard's events keep their order, two shards' interleave as their
/// readers deliver them.
///
/// While it is being placed (registered on one shard after another, or its replay read) each
/// shard's live events are held, at most the stream's free bytes (past that they are dropped and
/// the stream gets the `evicted` gap); ``finish(replays:gap:lastEventID:from:)`` queues the
/// replays, then what was held past them, and from then on live events go straight to the stream.
final class CrossShardStream: CrossListener {
    /// The stream's place on one shard.
    struct Part {
        let shard: Int
        var position: HubPosition
        /// Live events held until the stream is placed (nil once it is).
        var held: [(id: RedisStreamID, epoch: String, frame: Frame)]? = []
        var heldBytes = 0
        /// Held events were dropped (over the bound, or the shard's reader lost its place).
        var lost = false
        /// Live events up to this id were in the replay.
        var skipUpTo = RedisStreamID.zero
    }

    /// What a resume read from one shard: its events after the position (composite frames, in id
    /// order), the epoch they belong to and the last id the shard held when they were read.
    struct Replay {
        var events: [(RedisStreamID, Frame)]
        var epoch: String
        var high: RedisStreamID
    }

    private struct State {
        var parts: [Part]
        var closed = false
        /// Placed after a resume: it may move to its set's log once caught up (``moveToLog(delivered:join:)``).
        var wantsLog = false

        func index(of shard: Int) -> Int? { parts.firstIndex { $0.shard == shard } }
        var id: String { HubID.encode(parts.map(\.position)) }
    }

    let subscriber: Subscriber
    private let limit: Int
    private let state: Mutex<State>
    /// Called (outside every broker lock) when the stream may now move to its set's log.
    let onSettle: @Sendable (CrossShardStream) -> Void

    /// A stream reading `shards` (log numbers, ascending).
    init(_ subscriber: Subscriber, shards: [Int], onSettle: @escaping @Sendable (CrossShardStream) -> Void = { _ in }) {
        self.subscriber = subscriber
        self.onSettle = onSettle
        self.limit = subscriber.freeBytes
        self.state = Mutex(
            State(parts: shards.map { Part(shard: $0, position: HubPosition(log: $0, epoch: "0", major: 0, minor: 0)) })
        )
    }

    func placeLive(shard: Int, at id: RedisStreamID, epoch: String) {
        state.withLock { s in
            guard let i = s.index(of: shard) else { return }
            s.parts[i].position = HubPosition(log: shard, epoch: epoch, major: id.milliseconds, minor: id.sequence)
        }
    }

    /// A live event of `shard` (under that broker's lock, in the shard's order).
    func live(
        shard: Int, id: RedisStreamID, epoch: String, frame: Frame, wakes: inout [Subscriber],
        fanOut: inout LogFanOut
    ) -> Bool {
        state.withLock { s in
            guard !s.closed, let i = s.index(of: shard) else { return false }
            if s.parts[i].held != nil {
                guard !s.parts[i].lost else { return false }
                s.parts[i].heldBytes += frame.bytes.count
                if s.parts[i].heldBytes > limit {
                    s.parts[i].lost = true
                    s.parts[i].held = []
                } else {
                    s.parts[i].held!.append((id, epoch, frame))
                }
                return false
            }
            if id <= s.parts[i].skipUpTo { return false }
            s.parts[i].position = HubPosition(log: shard, epoch: epoch, major: id.milliseconds, minor: id.sequence)
            enqueue(frame.withID(s.id), &wakes)
            return s.wantsLog
        }
    }

    func settle() { onSettle(self) }

    /// Moves the stream to its set's log (`join`) when it is placed and, on every shard, the
    /// reader delivered (`delivered`, one per shard in order, read under every shard's lock, held
    /// by the caller) everything its replay held: it then has every event of its channels up to
    /// there, and the log every later one, so nothing is lost or repeated. Returns whether it
    /// moved (it reads alone no more).
    func moveToLog(delivered: [RedisStreamID], join: () -> Void) -> Bool {
        state.withLock { s in
            guard !s.closed, s.wantsLog, delivered.count == s.parts.count,
                s.parts.indices.allSatisfy({ s.parts[$0].held == nil && s.parts[$0].skipUpTo <= delivered[$0] })
            else { return false }
            s.closed = true
            join()
            return true
        }
    }

    /// `shard`'s reader lost its place: the stream gets the `evicted` gap (or, while held, starts
    /// with it).
    func lostPlace(shard: Int, wakes: inout [Subscriber], fanOut: inout LogFanOut) {
        state.withLock { s in
            guard !s.closed, let i = s.index(of: shard) else { return }
            if s.parts[i].held != nil {
                s.parts[i].lost = true
                s.parts[i].held = []
                return
            }
            enqueue(ResumeStatus.gapFrame(lastEventID: s.id, reason: .evicted), &wakes)
        }
    }

    private func enqueue(_ frame: Frame, _ wakes: inout [Subscriber]) {
        switch subscriber.enqueue(frame, deferWake: true) {
        case .wake, .overflow(wake: true): wakes.append(subscriber)
        default: break
        }
    }

    /// Places the stream: with `from` (the positions of its `Last-Event-ID`, one per shard) the
    /// replays are queued after them, shard by shard, each event with its composite id; without,
    /// the stream starts where each shard's reader was when it registered. Then what each shard
    /// held past its replay; from now on live events are queued as they come. Returns how the
    /// resume went (`fresh` without `lastEventID`).
    func finish(
        replays: [Int: Replay], gap: GapReason?, lastEventID: String?, from: [HubPosition]?
    ) -> ResumeStatus {
        state.withLock { s -> ResumeStatus in
            guard !s.closed else { return lastEventID == nil ? .fresh : gap.map { .gap($0) } ?? .exact }
            if let from {
                for p in from { if let i = s.index(of: p.log) { s.parts[i].position = p } }
            }
            let startID = s.id
            var frames: [Frame] = []
            var lost = false
            for i in s.parts.indices {
                let shard = s.parts[i].shard
                var high = RedisStreamID.zero
                if let replay = replays[shard] {
                    for (id, frame) in replay.events {
                        s.parts[i].position = HubPosition(
                            log: shard, epoch: replay.epoch, major: id.milliseconds, minor: id.sequence)
                        frames.append(frame.withID(s.id))
                    }
                    high = replay.high
                    s.parts[i].position = HubPosition(
                        log: shard, epoch: replay.epoch, major: high.milliseconds, minor: high.sequence)
                }
                for (id, epoch, frame) in s.parts[i].held ?? [] where id > high {
                    s.parts[i].position = HubPosition(
                        log: shard, epoch: epoch, major: id.milliseconds, minor: id.sequence)
                    frames.append(frame.withID(s.id))
                    high = id
                }
                if s.parts[i].lost { lost = true }
                s.parts[i].skipUpTo = high
                s.parts[i].held = nil
                s.parts[i].heldBytes = 0
            }
            let reported = subscriber.enqueueResume(
                frames, lastEventID: lastEventID ?? startID, gap: lost ? .evicted : gap)
            s.wantsLog = true
            guard lastEventID != nil else { return .fresh }
            return reported.map { .gap($0) } ?? .exact
        }
    }

    /// The stream is gone: nothing more is queued.
    func close() { state.withLock { $0.closed = true } }
}

/// What a shard's broker keeps for streams of channels on several shards (behind its state lock).
struct CrossShardState {
    /// The data set's epoch when the broker started (its reader's epoch before any entry).
    var dataEpoch: String?
    /// What reads channels on several shards (``CrossShardStream``, ``CrossSetLog``), by channel
    /// of this shard: each live event of the channel is handed to them, in order.
    var listeners: [String: [ObjectIdentifier: any CrossListener]] = [:]
}

extension RedisBroker {
    /// Channels only streams of several shards receive here (``channelCount`` counts the rest).
    var crossOnlyChannelCount: Int {
        state.withLock { s in
            Set(s.crossShards.listeners.keys).subtracting(s.channels.keys).subtracting(s.logs.keys)
                .subtracting(s.setsOf.keys).count
        }
    }
}

/// What reads channels of several shards, handed each live event of its channels on each shard
/// by that shard's reader, under that broker's lock, in the shard's order.
protocol CrossListener: AnyObject, Sendable {
    /// Sets where the listener starts on `shard`: the last entry that shard's reader delivered
    /// (called under that broker's lock, as it registers).
    func placeLive(shard: Int, at id: RedisStreamID, epoch: String)
    /// A live event of `shard` (`frame` with its position as id); wake-ups and log appends are
    /// finished by the caller outside its lock. True: call ``settle()`` then too.
    func live(
        shard: Int, id: RedisStreamID, epoch: String, frame: Frame, wakes: inout [Subscriber],
        fanOut: inout LogFanOut
    ) -> Bool
    /// `shard`'s reader lost its place (entries trimmed before it read them).
    func lostPlace(shard: Int, wakes: inout [Subscriber], fanOut: inout LogFanOut)
    /// What ``live(shard:id:epoch:frame:wakes:fanOut:)`` asked for, outside every broker lock.
    func settle()
}

extension RedisBroker {
    /// Makes `listener` receive the live events of `channels` (its channels on this shard) and
    /// sets where it starts here: the last entry this hub's reader delivered.
    func attachCross(_ listener: any CrossListener, channels: [String]) {
        state.withLock { s in attachCross(listener, channels: channels, in: &s) }
    }

    /// ``attachCross(_:channels:)`` under the lock the caller holds.
    func attachCross(_ listener: any CrossListener, channels: [String], in s: inout LocalState) {
        listener.placeLive(shard: logNumber, at: s.lastDelivered, epoch: s.lastEpoch ?? s.crossShards.dataEpoch ?? "0")
        for c in channels { s.crossShards.listeners[c, default: [:]][ObjectIdentifier(listener)] = listener }
    }

    /// Stops handing `stream` the live events of `channels`.
    func detachCross(_ stream: any CrossListener, channels: [String]) {
        state.withLock { s in
            for c in channels {
                s.crossShards.listeners[c]?[ObjectIdentifier(stream)] = nil
                if s.crossShards.listeners[c]?.isEmpty == true { s.crossShards.listeners[c] = nil }
            }
        }
    }

    /// Reads the replay of `channels` after `position` for a stream of several shards. Returns it,
    /// and the gap it calls for: `evicted` when events after the position may be gone (or the
    /// position is of another data set: then everything retained), `unknown` when this data set
    /// never issued the position (nothing replayed); nil replay for unknown.
    /// `servedAt`: when the stream was last sent an event (milliseconds; its newest position on
    /// any shard), for a channel without a stream here (it may have expired since).
    func crossReplay(
        channels: [String], after position: HubPosition, servedAt: UInt64, on lane: CommandLane
    ) -> (replay: CrossShardStream.Replay?, gap: GapReason?) {
        guard let minor = position.minor else { return (nil, .unknown) }
        let id = RedisStreamID(milliseconds: position.major, sequence: minor)
        do {
            var replay = try fetchReplay(
                channels: channels, after: id, composite: true, on: lane, checkSince: false,
                placedAt: max(servedAt, position.major))
            if replay.epoch != position.epoch {
                replay = try fetchReplay(
                    channels: channels, after: .zero, composite: true, on: lane, checkSince: false)
                return (
                    CrossShardStream.Replay(
                        events: replay.events, epoch: replay.epoch ?? "0", high: replay.upTo ?? .zero), .evicted
                )
            }
            let upTo = replay.upTo ?? .zero
            if id > upTo { return (nil, .unknown) }
            return (
                CrossShardStream.Replay(events: replay.events, epoch: position.epoch, high: upTo),
                replay.missed ? .evicted : nil
            )
        } catch {
            log("resume from Redis failed (\(error.message)); stream starts live with a gap event")
            return (nil, .unknown)
        }
    }
}

extension RedisBroker {
    /// Resumes a stream of this shard from a position `from` of another shard: its channels lived
    /// there before a shard was added (rendezvous placement moves a channel only to the new
    /// shard). Replays what that shard retains after the position (a moved channel's stream there
    /// expires after the channel TTL), then everything this shard retains: every event of the
    /// old shard precedes every event here when no hub with the old list published after one
    /// with the new list (docs/REDIS.md, "Shards"). The gap signal when either part may have lost
    /// events (`unknown` when the old shard never issued the position).
    func resumeMoved(
        _ subscriber: Subscriber, lastEventID: String, from p: HubPosition, on lane: CommandLane
    ) throws(MicroSSEError) -> ResumeStatus {
        let channels = subscriber.channels.map(\.rawValue)
        guard let old = settings.directory?.broker(p.log), let minor = p.minor else {
            return finishResume(subscriber, replay: [], gap: .unknown, lastEventID: lastEventID, after: .zero)
        }
        let oldID = RedisStreamID(milliseconds: p.major, sequence: minor)
        // The old shard's own command connection for callers outside its workers (this runs on
        // a worker of this shard, whose connection goes to this shard's Redis).
        let composite = channels.count > 1
        let before = try old.fetchReplay(
            channels: channels, after: oldID, composite: composite, on: old.commands, checkSince: false)
        var gap: GapReason?
        var prefix: [Frame] = []
        if before.epoch != p.epoch {
            gap = .evicted
        } else if oldID > (before.upTo ?? .zero) {
            return finishResume(subscriber, replay: [], gap: .unknown, lastEventID: lastEventID, after: .zero)
        } else {
            prefix = before.events.map(\.1)
            if before.missed { gap = .evicted }
        }
        let replay = try fetchReplay(
            channels: channels, after: .zero, composite: composite, on: lane, checkSince: false, placedAt: p.major)
        if replay.missed { gap = .evicted }
        return finishResume(
            subscriber, replay: replay.events, gap: gap, lastEventID: lastEventID, after: .zero, upTo: replay.upTo,
            before: prefix)
    }
}
