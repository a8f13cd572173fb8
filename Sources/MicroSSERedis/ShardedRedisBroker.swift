import MicroSSECore
import MicroSSEWire
import Synchronization

/// An ``EventBroker`` over several Redis deployments (`--redis` repeated): one ``RedisBroker``
/// per shard, each with its own log number in positions (its place in the list, from 0), and
/// every hub reading every shard.
///
/// - A channel lives on one shard, chosen by rendezvous hashing of its name over the shard
///   numbers (``shard(of:among:)``): the same on every hub and across restarts, and adding a
///   shard at the end of the list moves about 1/(N+1) of the channels, only to the new shard.
/// - A stream whose channels are all on one shard is that shard's broker's (ids with one
///   position, the log number of the shard); a stream of channels on several shards has one
///   position per shard it reads in its id: fresh, it reads its set's ``CrossSetLog``; resuming,
///   it is a ``CrossShardStream`` (each shard's replay read after its position, and the gap
///   signal when any shard's part cannot be exact).
/// - The list's order is the shards' identity: each deployment records its number
///   (`PREFIX:shard`) and a hub that lists it elsewhere refuses to start. See docs/REDIS.md,
///   "Shards", for what adding a shard does.
package final class ShardedRedisBroker: EventBroker {
    let shards: [RedisBroker]
    /// How each stream of channels on several shards reads: alone (it resumed), or its set's log.
    enum CrossReader {
        case alone(CrossShardStream)
        case set([String])
    }
    let crossReaders = Mutex<[UInt64: CrossReader]>([:])
    /// The logs of channel sets on several shards that fresh streams read, by sorted channels.
    let crossSets = Mutex<[[String]: CrossSetLog]>([:])

    let directory: ShardDirectory

    /// The broker of `shards`, which were made with `directory` in their settings.
    init(shards: [RedisBroker], directory: ShardDirectory) {
        self.shards = shards
        self.directory = directory
        directory.set(shards)
    }

    // The shards reach each other through the directory: let them go with this broker.
    deinit { directory.set([]) }

    /// The shard `channel` lives on among `count`: the highest score of a 64-bit mix of the
    /// channel name's FNV-1a hash with each shard number (rendezvous hashing). Stable: it
    /// depends on nothing but the name and the number (no per-process seed). The hub's reserved
    /// channels (`family:name`, a `:` no client channel may hold) are placed by their family, so
    /// one family shares one shard's log (Mercure's updates and hub announcements are read in one
    /// order).
    package static func shard(of channel: String, among count: Int) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        let key = channel.utf8.firstIndex(of: UInt8(ascii: ":")).map { channel.utf8[...$0] } ?? channel.utf8[...]
        for byte in key {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        var best = 0
        var bestScore: UInt64 = 0
        for i in 0..<max(1, count) {
            let score = mix(h ^ mix(UInt64(i) &+ 0x9e37_79b9_7f4a_7c15))
            if i == 0 || score > bestScore {
                best = i
                bestScore = score
            }
        }
        return best
    }

    /// SplitMix64's finalizer.
    private static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    func shard(of channel: ChannelName) -> RedisBroker {
        shards[Self.shard(of: channel.rawValue, among: shards.count)]
    }

    /// `subscriber`'s channels by shard number (ascending).
    func parts(of subscriber: Subscriber) -> [(shard: Int, channels: [String])] {
        var byShard: [Int: [String]] = [:]
        for c in subscriber.channels {
            byShard[Self.shard(of: c.rawValue, among: shards.count), default: []].append(c.rawValue)
        }
        return byShard.keys.sorted().map { ($0, byShard[$0]!) }
    }

    // MARK: Lifecycle

    package func start() throws(MicroSSEError) {
        for (n, shard) in shards.enumerated() {
            do throws(MicroSSEError) {
                try shard.start()
            } catch {
                for started in shards[..<n] { started.shutdown() }
                throw MicroSSEError(error.code, "shard \(n): \(error.message)")
            }
        }
    }

    package func shutdown() {
        for shard in shards { shard.shutdown() }
    }

    // MARK: Publish

    package func publish(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> String {
        try publishReceipt(event, to: channel).id
    }

    package func publishReceipt(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> PublishReceipt {
        let shard = shard(of: channel)
        return Self.inLog(try shard.publishReceipt(event, to: channel), of: shard)
    }

    package func publish(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<String, MicroSSEError>) -> Void
    ) {
        publishReceipt(event, to: channel) { completion($0.map(\.id)) }
    }

    package func publishReceipt(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<PublishReceipt, MicroSSEError>) -> Void
    ) {
        let shard = shard(of: channel)
        shard.publishReceipt(event, to: channel) { completion($0.map { Self.inLog($0, of: shard) }) }
    }

    /// `receipt` with its position in `shard`'s log (a label stays as it is).
    static func inLog(_ receipt: PublishReceipt, of shard: RedisBroker) -> PublishReceipt {
        guard var positions = HubID.decode(receipt.id), positions.count == 1 else { return receipt }
        positions[0].log = shard.logNumber
        var out = receipt
        out.id = HubID.encode(positions)
        return out
    }

    // MARK: Subscribe

    package var isAsynchronous: Bool { true }

    package func subscribe(_ subscriber: Subscriber, after lastEventID: String?) -> ResumeStatus {
        let parts = parts(of: subscriber)
        if parts.count <= 1 { return shards[parts.first?.shard ?? 0].subscribe(subscriber, after: lastEventID) }
        switch registerCross(subscriber, parts: parts, after: lastEventID) {
        case .done(let status): return status
        case .replay(let stream, let from, let lastEventID):
            var outcomes: [Int: (CrossShardStream.Replay?, GapReason?)] = [:]
            for (part, position) in zip(parts, from) {
                let shard = shards[part.shard]
                outcomes[part.shard] = shard.crossReplay(
                    channels: part.channels, after: position, servedAt: Self.servedAt(from), on: shard.commands)
            }
            return Self.finish(stream, outcomes: outcomes, lastEventID: lastEventID, from: from)
        }
    }

    package func subscribe(
        _ subscriber: Subscriber, after lastEventID: String?, completion: @escaping @Sendable (ResumeStatus) -> Void
    ) {
        let parts = parts(of: subscriber)
        if parts.count <= 1 {
            shards[parts.first?.shard ?? 0].subscribe(subscriber, after: lastEventID, completion: completion)
            return
        }
        switch registerCross(subscriber, parts: parts, after: lastEventID) {
        case .done(let status): completion(status)
        case .replay(let stream, let from, let lastEventID):
            fetch(parts, from: from, index: 0, outcomes: [:]) { outcomes in
                completion(Self.finish(stream, outcomes: outcomes, lastEventID: lastEventID, from: from))
            }
        }
    }

    enum CrossRegistration {
        case done(ResumeStatus)
        /// Live events are held until the replays after `from` (one position per part) are read.
        case replay(CrossShardStream, from: [HubPosition], lastEventID: String)
    }

    /// Places a stream of several shards: fresh, on its set's log; else registered on each shard
    /// (live events held), then `unknown` for an id that does not name exactly its shards, or a
    /// replay to read.
    func registerCross(
        _ subscriber: Subscriber, parts: [(shard: Int, channels: [String])], after lastEventID: String?
    ) -> CrossRegistration {
        guard let lastEventID else {
            joinSetLog(subscriber, parts: parts)
            return .done(.fresh)
        }
        let stream = CrossShardStream(subscriber, shards: parts.map(\.shard)) { [weak self] in
            self?.moveToSetLog($0)
        }
        crossReaders.withLock { $0[subscriber.id] = .alone(stream) }
        for part in parts { shards[part.shard].attachCross(stream, channels: part.channels) }
        guard let positions = HubID.decode(lastEventID), positions.map(\.log) == parts.map(\.shard),
            positions.allSatisfy({ $0.minor != nil })
        else {
            // A label, an id of other shards (or of one shard), or garbage: the hub cannot
            // place it on every shard the stream reads.
            return .done(stream.finish(replays: [:], gap: .unknown, lastEventID: lastEventID, from: nil))
        }
        return .replay(stream, from: positions, lastEventID: lastEventID)
    }

    /// Reads the replay of each part from `index` on, each on a worker of its shard, one after
    /// another, then calls `done` (a shard shutting down counts as `unknown`).
    private func fetch(
        _ parts: [(shard: Int, channels: [String])], from: [HubPosition], index: Int,
        outcomes: [Int: (CrossShardStream.Replay?, GapReason?)],
        done: @escaping @Sendable ([Int: (CrossShardStream.Replay?, GapReason?)]) -> Void
    ) {
        guard index < parts.count else { return done(outcomes) }
        let part = parts[index]
        let shard = shards[part.shard]
        let channels = part.channels
        let failed: @Sendable () -> Void = {
            var out = outcomes
            out[part.shard] = (nil, .unknown)
            done(out)
        }
        let job = RedisWorkers.Job(
            run: { lane in
                var out = outcomes
                out[part.shard] = shard.crossReplay(
                    channels: channels, after: from[index], servedAt: Self.servedAt(from), on: lane)
                self.fetch(parts, from: from, index: index + 1, outcomes: out, done: done)
            }, cancel: failed)
        if shard.workers.submit(job, .resume) != nil { failed() }
    }

    /// When a stream at `positions` was last sent an event: its newest position's time (a shard
    /// it had no event from yet says 0).
    static func servedAt(_ positions: [HubPosition]) -> UInt64 { positions.map(\.major).max() ?? 0 }

    /// Queues the replays read for `stream` with the gap they call for: `unknown` when any part
    /// cannot be placed (then nothing is replayed and the stream starts live), else `evicted`
    /// when any part may have lost events.
    static func finish(
        _ stream: CrossShardStream, outcomes: [Int: (CrossShardStream.Replay?, GapReason?)], lastEventID: String,
        from: [HubPosition]
    ) -> ResumeStatus {
        if outcomes.values.contains(where: { $0.1 == .unknown }) {
            return stream.finish(replays: [:], gap: .unknown, lastEventID: lastEventID, from: nil)
        }
        var replays: [Int: CrossShardStream.Replay] = [:]
        for (shard, outcome) in outcomes { replays[shard] = outcome.0 }
        let evicted = outcomes.values.contains { $0.1 == .evicted }
        return stream.finish(replays: replays, gap: evicted ? .evicted : nil, lastEventID: lastEventID, from: from)
    }

    package func unsubscribe(_ subscriber: Subscriber) {
        let parts = parts(of: subscriber)
        if parts.count <= 1 {
            shards[parts.first?.shard ?? 0].unsubscribe(subscriber)
            return
        }
        switch crossReaders.withLock({ $0.removeValue(forKey: subscriber.id) }) {
        case .alone(let stream):
            stream.close()
            for part in parts { shards[part.shard].detachCross(stream, channels: part.channels) }
        case .set(let key):
            leaveSetLog(subscriber, key: key, parts: parts)
        case nil:
            break
        }
    }

    // MARK: State

    /// Streams of channels on several shards reading alone, and set logs of such channels (tests).
    package var crossCounts: (alone: Int, setLogs: Int) {
        let alone = crossReaders.withLock { readers in
            readers.values.filter { if case .alone = $0 { true } else { false } }.count
        }
        return (alone, crossSets.withLock { $0.count })
    }

    package var channelCount: Int { shards.reduce(0) { $0 + $1.channelCount + $1.crossOnlyChannelCount } }

    package var unavailableReason: String? {
        for (n, shard) in shards.enumerated() {
            if let reason = shard.unavailableReason { return "shard \(n): \(reason)" }
        }
        return nil
    }

    package var readerHealth: ReaderHealth? {
        let all = shards.compactMap(\.readerHealth)
        return ReaderHealth(
            lostPlace: all.reduce(0) { $0 + $1.lostPlace }, lagMilliseconds: all.map(\.lagMilliseconds).max() ?? 0)
    }
}

/// The brokers of every shard, by log number, for a shard whose channel moved in from another.
final class ShardDirectory: Sendable {
    private let brokers = Mutex<[RedisBroker]>([])

    func set(_ list: [RedisBroker]) { brokers.withLock { $0 = list } }

    func broker(_ log: Int) -> RedisBroker? {
        brokers.withLock { log >= 0 && log < $0.count ? $0[log] : nil }
    }
}

extension RedisURL {
    /// What makes two URLs the same deployment (`redisShards` lists each once): the server and
    /// database, or the sentinels (in any order), the name they monitor and the database.
    var deploymentIdentity: String {
        if let masterName {
            return "sentinel \(sentinels.map(\.description).sorted().joined(separator: ",")) \(masterName) \(database)"
        }
        return "redis \(Endpoint(host: host.lowercased(), port: port)) \(database)"
    }
}
