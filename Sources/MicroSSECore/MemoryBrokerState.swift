import MicroSSEWire

/// The in-memory broker's state: channels with their bounded history and subscribers, the
/// global eviction order, and what is remembered of evicted and forgotten ones. Mutated only
/// under ``MemoryBroker``'s lock.
extension MemoryBroker {
    struct Entry {
        let seq: UInt64
        /// When it was published (wall clock, microseconds), for the history TTL.
        let publishedAt: UInt64
        /// The id the publisher gave; nil for a server-assigned id (`String(seq)`, already in
        /// the frame's `id:` line: not kept twice).
        let callerID: String?
        /// Emptied on eviction, so evicted bytes are freed at once, not at the next compaction.
        var frame: Frame

        init(seq: UInt64, publishedAt: UInt64, id: String, frame: Frame, callerGiven: Bool) {
            self.seq = seq
            self.publishedAt = publishedAt
            self.callerID = callerGiven ? id : nil
            self.frame = frame
        }

        /// Its allocations: the frame's buffer and a caller-given id (its slot in the history
        /// array and in the global order are charged with those arrays).
        var cost: Int { HeapSize.array(frame.bytes) + (callerID.map(HeapSize.string) ?? 0) }
    }

    struct Channel {
        /// The name as first stored, shared by the global eviction order (one allocation).
        let name: ChannelName
        var history: [Entry] = []
        var historyHead = 0
        var historyBytes = 0
        /// Resuming from a position below this may have missed events (evicted or pre-restart).
        var floor: UInt64
        /// Caller-given ids still in history, to place a `Last-Event-ID` that is not a number.
        var callerIDs: [String: UInt64] = [:]
        /// The channel's log and the streams of this channel alone, which read each event from it.
        var readers = LogReaders()
        /// The logs of the channel sets that include this channel (see ``setLogs``): each event
        /// of this channel is appended to them too.
        /// (A set's log is listed only while some stream reads it.)
        var sets: [ObjectIdentifier: SetLog<[ChannelName]>] = [:]
        /// The retained entries' own allocations (``Entry/cost``).
        var entriesCost = 0
        /// What ``cost`` was when last added to the broker's accounted bytes (``State/settle(_:freed:)``).
        var charged = 0

        var retained: ArraySlice<Entry> { history[historyHead...] }
        var isRetaining: Bool { historyHead < history.count }
        /// Nothing retained and nobody subscribed: the channel can be forgotten.
        var isIdle: Bool { !isRetaining && readers.isEmpty && sets.isEmpty }
        /// Its allocations as the heap holds them: its log (empty while no stream reads it),
        /// its name, its history array and caller-id index by capacity, its retained entries.
        /// (Its slot in the channel dictionary is charged with the dictionary.)
        var cost: Int {
            HeapSize.channelLog + HeapSize.string(name.rawValue) + HeapSize.array(history)
                + HeapSize.dictionary(callerIDs) + entriesCost
        }

        mutating func append(_ entry: Entry) {
            history.append(entry)
            historyBytes += entry.frame.bytes.count
            entriesCost += entry.cost
            if let id = entry.callerID { callerIDs[id] = entry.seq }
        }

        func isOver(_ limits: Limits) -> Bool {
            history.count - historyHead > limits.historyCount || (historyBytes > limits.historyBytes && isRetaining)
        }

        /// Evicts the oldest retained entry. Returns its accounted cost, and its id when it was a
        /// caller-given id that must be remembered for resume.
        mutating func evictOldest() -> (cost: Int, callerID: (String, UInt64)?) {
            let old = history[historyHead]
            history[historyHead].frame = MemoryBroker.evictedFrame
            historyHead += 1
            historyBytes -= old.frame.bytes.count
            entriesCost -= old.cost
            floor = old.seq
            var callerID: (String, UInt64)?
            if let id = old.callerID, callerIDs[id] == old.seq {
                callerIDs[id] = nil
                callerID = (id, old.seq)
                // A dictionary keeps its capacity when emptied: let it go.
                if callerIDs.isEmpty { callerIDs = [:] }
            }
            if historyHead == history.count {
                history = []
                historyHead = 0
            } else if historyHead > 64 && historyHead * 2 > history.count {
                history.removeFirst(historyHead)
                historyHead = 0
                // Removing keeps the capacity: a history cut to a quarter of it is copied.
                if history.count * 4 < history.capacity { history = MemoryBroker.compacted(history[...]) }
            }
            return (old.cost, callerID)
        }

        /// The change of ``cost`` since it was last charged, now charged.
        mutating func settle() -> Int {
            let now = cost
            defer { charged = now }
            return now - charged
        }

        /// Adds `s`, a stream of this channel alone: it reads the log from its end on.
        mutating func add(_ s: Subscriber) {
            readers.insert(s)
        }

        mutating func remove(_ s: Subscriber) {
            if readers.remove(s), readers.isEmpty {
                readers.log.trim(below: .max)
            }
        }
    }

    /// One retained event's place in the global eviction order (publish order).
    struct Published {
        let channel: ChannelName
        let seq: UInt64
        let publishedAt: UInt64
    }

    struct State {
        var channels: [ChannelName: Channel] = [:]
        /// The logs of the channel sets that open streams read, by key (``MemoryBroker/setKey(_:)``;
        /// see `LogReaders.swift`).
        var setLogs: [[ChannelName]: SetLog<[ChannelName]>] = [:]
        var lastSeq: UInt64
        let bootSeq: UInt64
        var closed = false
        /// Labels (caller-given ids) evicted from history, per channel, remembered (boundedly) so
        /// that a client resuming from one is placed where it really was in that channel.
        var evictedCallerIDs: [LabelKey: UInt64] = [:]
        var evictedOrder: [LabelKey] = []
        var evictedHead = 0
        /// The remembered ids' strings (``HeapSize/string(_:)``), bounded by
        /// ``MemoryBroker/evictedCallerIDBytesLimit``.
        var evictedCallerIDBytes = 0
        /// Bytes counted against ``Limits/memoryBytes``: every channel's ``Channel/cost`` (as
        /// last settled), the remembered evicted ids' strings, and ``containersCost``.
        var accountedBytes = 0
        /// The containers' own storage as last counted (``countContainers()``).
        var containersCost = 0
        /// Every event published, oldest first; entries of events a channel already evicted by
        /// its own limits stay until popped or compacted (`staleCount` counts them).
        var order: [Published] = []
        var orderHead = 0
        var staleCount = 0
        /// The floors of forgotten channels, by a hash of the name: a channel created again
        /// starts from the highest floor of any forgotten channel in its bucket, so a resume
        /// into a forgotten channel still reports what was evicted from it.
        var forgottenFloors: [UInt64]

        init(lastSeq: UInt64, bootSeq: UInt64) {
            self.lastSeq = lastSeq
            self.bootSeq = bootSeq
            self.forgottenFloors = Array(repeating: bootSeq, count: MemoryBroker.forgottenFloorBuckets)
            countContainers()
        }

        func bucket(_ name: ChannelName) -> Int {
            Int(UInt(bitPattern: name.hashValue) % UInt(MemoryBroker.forgottenFloorBuckets))
        }

        /// The floor of a channel that does not exist (never did, or was forgotten).
        func absentFloor(_ name: ChannelName) -> UInt64 { forgottenFloors[bucket(name)] }

        /// The storage of the broker's containers, charged by capacity: the channel dictionary,
        /// the global order, the remembered evicted ids' dictionary and order, the forgotten
        /// floors. Call after any of them may have grown or been replaced.
        mutating func countContainers() {
            let cost =
                HeapSize.dictionary(channels) + HeapSize.array(order) + HeapSize.dictionary(evictedCallerIDs)
                + HeapSize.array(evictedOrder) + HeapSize.array(forgottenFloors)
            accountedBytes += cost - containersCost
            containersCost = cost
        }

        /// Brings the accounted bytes up to date with the channel's ``Channel/cost`` after it
        /// changed; `freed` is what its own limits evicted (for ``HeapReturn``).
        mutating func settle(_ name: ChannelName, freed: Int = 0) {
            guard let delta = channels[name]?.settle() else { return }
            accountedBytes += delta
            HeapReturn.freed(freed)
        }

        /// Creates the channel when absent.
        mutating func ensureChannel(_ name: ChannelName) {
            guard channels[name] == nil else { return }
            var channel = Channel(name: name, floor: absentFloor(name))
            accountedBytes += channel.settle()
            channels[name] = channel
            countContainers()
        }

        /// Forgets the channel when nothing is retained and nobody is subscribed, keeping its
        /// floor in its bucket.
        mutating func forgetIfIdle(_ name: ChannelName) {
            guard let channel = channels[name], channel.isIdle else { return }
            let b = bucket(name)
            forgottenFloors[b] = max(forgottenFloors[b], channel.floor)
            accountedBytes -= channel.charged
            HeapReturn.freed(channel.charged)
            channels[name] = nil
            // A dictionary keeps its capacity as entries go: one an eighth full is copied
            // (amortized O(1) per channel forgotten).
            if channels.capacity > 48 && channels.count * 8 < channels.capacity {
                channels = MemoryBroker.compacted(channels)
            }
            countContainers()
        }

        /// Evicts the channel's oldest retained event (its entry in the global order was just popped).
        mutating func evictOldest(of name: ChannelName) {
            guard let evicted = channels[name]?.evictOldest() else { return }
            settle(name, freed: evicted.cost)
            if let callerID = evicted.callerID {
                rememberEvicted(LabelKey(channel: name, label: callerID.0), callerID.1)
            }
        }

        /// Evicts the oldest events of all channels until the accounted bytes fit `budget` and
        /// nothing retained was published before `cutoff` (the history TTL; 0 = none).
        mutating func enforce(budget: Int, cutoff: UInt64 = 0) {
            countContainers()
            while orderHead < order.count && (accountedBytes > budget || order[orderHead].publishedAt < cutoff) {
                let oldest = order[orderHead]
                orderHead += 1
                if let c = channels[oldest.channel], c.isRetaining, c.history[c.historyHead].seq == oldest.seq {
                    evictOldest(of: oldest.channel)
                    forgetIfIdle(oldest.channel)
                } else {
                    staleCount = max(0, staleCount - 1)
                }
            }
            if orderHead > 1_024 && orderHead * 2 > order.count {
                order.removeFirst(orderHead)
                orderHead = 0
                // Removing keeps the capacity: an order cut to a quarter of it is copied.
                if order.count * 4 < order.capacity { order = MemoryBroker.compacted(order[...]) }
            }
            if staleCount > 1_024 && staleCount * 2 > order.count - orderHead {
                // An entry is live while its channel still retains it: channels evict oldest first.
                order = order[orderHead...].filter { p in
                    guard let c = channels[p.channel], c.isRetaining else { return false }
                    return p.seq >= c.history[c.historyHead].seq
                }
                orderHead = 0
                staleCount = 0
            }
            countContainers()
        }

        mutating func rememberEvicted(_ key: LabelKey, _ seq: UInt64) {
            if evictedCallerIDs.updateValue(seq, forKey: key) == nil {
                evictedOrder.append(key)
                evictedCallerIDBytes += HeapSize.string(key.label)
                accountedBytes += HeapSize.string(key.label)
            }
            while evictedOrder.count - evictedHead > MemoryBroker.evictedCallerIDLimit
                || (evictedCallerIDBytes > MemoryBroker.evictedCallerIDBytesLimit && evictedHead < evictedOrder.count)
            {
                let oldest = evictedOrder[evictedHead]
                evictedHead += 1
                evictedCallerIDs[oldest] = nil
                evictedCallerIDBytes -= HeapSize.string(oldest.label)
                accountedBytes -= HeapSize.string(oldest.label)
            }
            if evictedHead > 1_024 && evictedHead * 2 > evictedOrder.count {
                evictedOrder.removeFirst(evictedHead)
                evictedHead = 0
            }
            countContainers()
        }
    }
}

extension MemoryBroker {
    /// A copy of `elements` whose capacity fits them (``Array/removeFirst(_:)`` and removals
    /// keep the old capacity).
    static func compacted<T>(_ elements: ArraySlice<T>) -> [T] {
        var fresh: [T] = []
        fresh.reserveCapacity(elements.count * 2)
        fresh.append(contentsOf: elements)
        return fresh
    }

    static func compacted<K, V>(_ d: [K: V]) -> [K: V] {
        var fresh = [K: V](minimumCapacity: d.count * 2)
        for (k, v) in d { fresh[k] = v }
        return fresh
    }
}
