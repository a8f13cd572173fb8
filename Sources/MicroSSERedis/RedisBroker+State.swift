import MicroSSECore

/// What the broker keeps about its own subscribers (behind its state lock).
extension RedisBroker {
    /// Live events held for a stream while its replay is fetched, at most its byte bound (a
    /// resume storm must not grow the hub without limit): past it they are dropped and the stream
    /// starts live after the replay with an `evicted` gap.
    package struct Pending {
        let limit: Int
        package private(set) var buffered: [(RedisStreamID, Frame)] = []
        private var bytes = 0
        package private(set) var overflowed = false

        package init(limit: Int) { self.limit = limit }

        package mutating func hold(_ id: RedisStreamID, _ frame: Frame) {
            guard !overflowed else { return }
            bytes += frame.bytes.count
            if bytes > limit {
                overflowed = true
                buffered = []
            } else {
                buffered.append((id, frame))
            }
        }

        /// Drops what is held: live events were lost before the stream could get them (the
        /// reader lost its place), so it starts live after its replay with an `evicted` gap.
        package mutating func lose() {
            overflowed = true
            buffered = []
        }
    }

    struct LocalState {
        /// Streams not reading a log yet, by channel: resuming ones (their live events held in
        /// `pending`) and just resumed ones (skipping what their replay held, `skipUpTo`). A
        /// stream moves to its log at the first live event past its replay.
        var channels: [String: [UInt64: Subscriber]] = [:]
        /// Every other stream reads a log: a stream of one channel that channel's, a stream of
        /// several the log of its channel set (as in the in-memory broker): a live event is
        /// appended once to its channel's log and to the log of each set that includes it.
        var logs: [String: LogReaders] = [:]
        var setLogs: [[String]: SetLog<[String]>] = [:]
        /// The set logs that include each channel.
        var setsOf: [String: [ObjectIdentifier: SetLog<[String]>]] = [:]
        /// Subscribers whose replay is being fetched: live events are buffered meanwhile.
        var pending: [UInt64: Pending] = [:]
        /// Live events at or below this id were already sent to the subscriber (by replay).
        var skipUpTo: [UInt64: RedisStreamID] = [:]
        /// The last global-stream id fanned out by this hub, and the count and epoch its entry
        /// carried (nil before the first entry that carries them): the reader's place.
        var lastDelivered = RedisStreamID.zero
        var lastCount: UInt64?
        var lastEpoch: String?
        /// Streams of channels on several shards, and the epoch (see ``CrossShardState``).
        var crossShards = CrossShardState()
        var closed = false
    }
}

extension RedisBroker.LocalState {
    /// Makes `sub` read its channel's log, or its channel set's, from the log's end on.
    mutating func addLogReader(_ sub: Subscriber) {
        let names = sub.channels.map(\.rawValue)
        if names.count == 1 {
            logs[names[0], default: LogReaders()].insert(sub)
        } else if names.count > 1 {
            if let made = SetLog.insert(sub, key: names.sorted(), in: &setLogs) {
                for name in made.key { setsOf[name, default: [:]][made.id] = made }
            }
        }
    }

    /// Stops `sub` reading a log (a log read by nobody goes).
    mutating func removeLogReader(_ sub: Subscriber) {
        let names = sub.channels.map(\.rawValue)
        if names.count == 1 {
            if logs[names[0]]?.remove(sub) == true, logs[names[0]]?.isEmpty == true { logs[names[0]] = nil }
        } else if names.count > 1, let gone = SetLog.remove(sub, key: names.sorted(), from: &setLogs) {
            for name in gone.key {
                setsOf[name]?[gone.id] = nil
                if setsOf[name]?.isEmpty == true { setsOf[name] = nil }
            }
        }
    }

    /// Forgets `sub` as a stream not reading a log yet (resuming, or skipping its replay).
    mutating func dropWaiting(_ sub: Subscriber) {
        for c in sub.channels {
            channels[c.rawValue]?[sub.id] = nil
            if channels[c.rawValue]?.isEmpty == true { channels[c.rawValue] = nil }
        }
        pending[sub.id] = nil
        skipUpTo[sub.id] = nil
    }

    /// Moves a stream whose replay is queued (and past which live events now come) to its log.
    mutating func moveToLog(_ sub: Subscriber) {
        dropWaiting(sub)
        addLogReader(sub)
    }

    /// Adds a live event of `channel` to the batch, for each log that carries it: `single` to
    /// the channel's, `multi` (its position, never a label) to each set's.
    func add(_ single: Frame, _ multi: Frame, of channel: String, to batch: inout LogBatch) {
        if let readers = logs[channel] { batch.add(single, for: readers) }
        for set in (setsOf[channel] ?? [:]).values { batch.add(multi, for: set.readers) }
    }

    /// Channels some stream of this hub receives.
    var channelCount: Int { Set(channels.keys).union(logs.keys).union(setsOf.keys).count }
}
