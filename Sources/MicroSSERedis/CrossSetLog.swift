import MicroSSECore
import MicroSSEWire
import Synchronization

/// The log of one channel set whose channels live on several shards, read by every fresh stream
/// of that set (``ShardedRedisBroker``), as a set log of one shard is (see `LogReaders.swift`):
/// each shard's reader appends the events of its channels once, with the set's composite id,
/// whatever the number of streams reading it.
///
/// The id of each frame holds, per shard, the newest position the log appended (or, before any,
/// where that shard's reader was when the log registered there): the log was handed every event
/// of its channels on that shard after that position, so a stream that read the frame resumes
/// from its id exactly. A stream joins at the log's end; a resuming stream reads alone
/// (``CrossShardStream``) with positions of its own.
final class CrossSetLog: CrossListener {
    let key: [String]
    private struct State {
        var readers = LogReaders()
        var positions: [HubPosition]
    }
    private let state: Mutex<State>

    /// The log of the channels `key` (sorted), on `shards` (log numbers, ascending).
    init(key: [String], shards: [Int]) {
        self.key = key
        self.state = Mutex(
            State(positions: shards.map { HubPosition(log: $0, epoch: "0", major: 0, minor: 0) }))
    }

    func placeLive(shard: Int, at id: RedisStreamID, epoch: String) {
        state.withLock { s in
            guard let i = s.positions.firstIndex(where: { $0.log == shard }) else { return }
            s.positions[i] = HubPosition(log: shard, epoch: epoch, major: id.milliseconds, minor: id.sequence)
        }
    }

    func live(
        shard: Int, id: RedisStreamID, epoch: String, frame: Frame, wakes: inout [Subscriber],
        fanOut: inout LogFanOut
    ) -> Bool {
        state.withLock { s in
            guard let i = s.positions.firstIndex(where: { $0.log == shard }) else { return }
            s.positions[i] = HubPosition(log: shard, epoch: epoch, major: id.milliseconds, minor: id.sequence)
            s.readers.append(frame.withID(HubID.encode(s.positions)), into: &fanOut)
        }
        return false
    }

    func settle() {}

    func lostPlace(shard: Int, wakes: inout [Subscriber], fanOut: inout LogFanOut) {
        state.withLock { s in
            let gap = ResumeStatus.gapFrame(lastEventID: HubID.encode(s.positions), reason: .evicted)
            s.readers.append(gap, into: &fanOut)
        }
    }

    /// Makes `subscriber` read the log from its end on.
    func join(_ subscriber: Subscriber) {
        state.withLock { $0.readers.insert(subscriber) }
    }

    /// Stops `subscriber` reading the log; returns whether no stream reads it any more.
    func leave(_ subscriber: Subscriber) -> Bool {
        state.withLock { s in
            s.readers.remove(subscriber)
            return s.readers.isEmpty
        }
    }
}

extension ShardedRedisBroker {
    /// A fresh stream of channels on several shards reads its set's log, made (and registered on
    /// each shard) by the first.
    func joinSetLog(_ subscriber: Subscriber, parts: [(shard: Int, channels: [String])]) {
        let key = subscriber.channels.map(\.rawValue).sorted()
        crossSets.withLock { sets in
            if let set = sets[key] {
                set.join(subscriber)
                return
            }
            // Registered shard by shard: frames appended before the last shard placed it reach no
            // stream (none reads it yet), and from then on its positions hold for every shard.
            let set = CrossSetLog(key: key, shards: parts.map(\.shard))
            for part in parts { shards[part.shard].attachCross(set, channels: part.channels) }
            set.join(subscriber)
            sets[key] = set
        }
        crossReaders.withLock { $0[subscriber.id] = .set(key) }
    }

    /// Moves a stream that resumed (reading alone) to its set's log once it caught up on every
    /// shard (``CrossShardStream/moveToLog(delivered:join:)``): with the set's lock, every one of
    /// its shards' locks (in ascending order; a reader holds one at a time) and the readers'
    /// table held, so no event is delivered meanwhile and an unsubscribe either comes first (the
    /// stream stays gone) or finds it on the log. Not caught up: it reads alone, and its next
    /// live event tries again.
    func moveToSetLog(_ stream: CrossShardStream) {
        let subscriber = stream.subscriber
        let parts = parts(of: subscriber)
        let key = subscriber.channels.map(\.rawValue).sorted()
        crossSets.withLock { sets in
            var delivered: [RedisStreamID] = []
            // A set made here is registered on each shard on the way out, every lock still held:
            // no event reaches it before every shard placed it.
            let made = sets[key] == nil ? CrossSetLog(key: key, shards: parts.map(\.shard)) : nil
            guard let set = sets[key] ?? made else { return }
            let moved = withShardLocks(parts[...], &delivered, stream, made) { delivered in
                crossReaders.withLock { readers in
                    guard case .alone(let current) = readers[subscriber.id], current === stream,
                        stream.moveToLog(delivered: delivered, join: { set.join(subscriber) })
                    else { return false }
                    readers[subscriber.id] = .set(key)
                    return true
                }
            }
            if moved, let made { sets[key] = made }
        }
    }

    /// Takes the state lock of each of `parts`' shards in turn (ascending), noting where its reader
    /// is, and runs `body` with all of them held; when it returns true, on the way out, under each
    /// lock, unregisters `stream` and registers `made` (a set log made for it) on that shard.
    private func withShardLocks(
        _ parts: ArraySlice<(shard: Int, channels: [String])>, _ delivered: inout [RedisStreamID],
        _ stream: CrossShardStream, _ made: CrossSetLog?, _ body: ([RedisStreamID]) -> Bool
    ) -> Bool {
        guard let part = parts.first else { return body(delivered) }
        let broker = shards[part.shard]
        return broker.state.withLock { s in
            delivered.append(s.lastDelivered)
            let moved = withShardLocks(parts.dropFirst(), &delivered, stream, made, body)
            if moved {
                for c in part.channels {
                    s.crossShards.listeners[c]?[ObjectIdentifier(stream)] = nil
                    if s.crossShards.listeners[c]?.isEmpty == true { s.crossShards.listeners[c] = nil }
                }
                if let made { broker.attachCross(made, channels: part.channels, in: &s) }
            }
            return moved
        }
    }

    /// `subscriber` leaves its set's log; the last one unregisters it from its shards.
    func leaveSetLog(_ subscriber: Subscriber, key: [String], parts: [(shard: Int, channels: [String])]) {
        let gone = crossSets.withLock { sets -> CrossSetLog? in
            guard let set = sets[key], set.leave(subscriber) else { return nil }
            sets[key] = nil
            return set
        }
        guard let gone else { return }
        for part in parts { shards[part.shard].detachCross(gone, channels: part.channels) }
    }
}
