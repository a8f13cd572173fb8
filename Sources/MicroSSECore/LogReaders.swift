// Who reads which log. A stream of one channel reads that channel's log. A stream of several
// channels reads the log of its channel set: one log per distinct set named by open streams
// (`?channel=a&channel=b` and `?channel=b&channel=a` share one), to which a publish to any of its
// channels appends the event too, under the broker's lock, so the set's log is in publish order
// across its channels. A publish so costs one append per channel and per set that includes it,
// whatever the number of streams reading them; in the worst case (every stream naming a set of
// its own) a set per stream, bounded by the open streams. The Redis broker keeps its live
// streams on these types the same way.
//
// A broker unsubscribes a stream once its connection is gone (after the stream was detached), so
// nothing reads a log after leaving it: a channel's log stays with its channel and is trimmed, a
// set's log goes with its last reader (its frames with the last reference to it).

/// A log and the streams reading it, each with its place in the list (removal in O(1)). Kept
/// under a broker's lock.
package struct LogReaders {
    package let log = ChannelLog()
    package private(set) var list: [Subscriber] = []
    private var index: [UInt64: Int] = [:]

    package init() {}

    package var isEmpty: Bool { list.isEmpty }

    /// Makes `s` read the log from its end on.
    package mutating func insert(_ s: Subscriber) {
        s.attach(log: log)
        index[s.id] = list.count
        list.append(s)
    }

    /// Removes `s`; false when it was not listed.
    @discardableResult
    package mutating func remove(_ s: Subscriber) -> Bool {
        guard let i = index.removeValue(forKey: s.id) else { return false }
        let last = list.removeLast()
        if i < list.count {
            list[i] = last
            index[last.id] = i
        }
        return true
    }

    /// Appends `frame` to the log and looks at its readers (see ``LogFanOut``).
    package func append(_ frame: Frame, into fanOut: inout LogFanOut) {
        if !list.isEmpty { fanOut.append(frame, to: log, readers: list) }
    }
}

/// The log of one channel set, held by reference from each of its channels (a publish reaches it
/// without hashing its key, and a channel lets go of it in O(1)).
package final class SetLog<Key: Hashable> {
    package let key: Key
    package var readers = LogReaders()

    package init(key: Key) { self.key = key }

    package var id: ObjectIdentifier { ObjectIdentifier(self) }

    /// Makes `s` read the log of `key` in `logs`, made there when absent. Returns the log when
    /// it was made: the caller lists it under each of its channels.
    package static func insert(_ s: Subscriber, key: Key, in logs: inout [Key: SetLog]) -> SetLog? {
        let existing = logs[key]
        let set = existing ?? SetLog(key: key)
        if existing == nil { logs[key] = set }
        set.readers.insert(s)
        return existing == nil ? set : nil
    }

    /// Stops `s` reading the log of `key` in `logs`. Returns the log when no stream reads it any
    /// more: it has left `logs`, and the caller unlists it under each of its channels.
    package static func remove(_ s: Subscriber, key: Key, from logs: inout [Key: SetLog]) -> SetLog? {
        guard let set = logs[key], set.readers.remove(s), set.readers.isEmpty else { return nil }
        logs[key] = nil
        return set
    }
}

/// The frames of a batch of events bound for each log, appended log by log so that each log's
/// readers are looked at once per batch, not once per event (the Redis reader's batches).
package struct LogBatch {
    private var pending: [(readers: LogReaders, frames: [Frame])] = []
    private var slot: [ObjectIdentifier: Int] = [:]

    package init() {}

    package mutating func add(_ frame: Frame, for readers: LogReaders) {
        guard !readers.isEmpty else { return }
        let id = ObjectIdentifier(readers.log)
        if let i = slot[id] {
            pending[i].frames.append(frame)
        } else {
            slot[id] = pending.count
            pending.append((readers, [frame]))
        }
    }

    /// Appends what is pending. Call before a stream joins a log, so that it reads nothing of
    /// the batch from before it joined.
    package mutating func flush(into fanOut: inout LogFanOut) {
        for (readers, frames) in pending { fanOut.append(frames, to: readers.log, readers: readers.list) }
        pending = []
        slot = [:]
    }
}
