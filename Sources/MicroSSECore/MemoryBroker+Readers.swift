/// Who reads which log of the in-memory broker. A stream of one channel reads that channel's
/// log. A stream of several channels reads the log of its channel set: one log per distinct set
/// named by open streams (`?channel=a&channel=b` and `?channel=b&channel=a` share one), to which
/// a publish to any of its channels appends the event too, under the broker's lock, so the set's
/// log is in publish order across its channels. A publish so costs one append per channel and
/// per set that includes it, whatever the number of streams reading them; in the worst case
/// (every stream naming a set of its own) a set per stream, bounded by the open streams. The
/// Redis broker keeps its live streams on ``LogReaders`` the same way.
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

    /// Removes `s`; false when it was not listed. What `s` had not read yet stays readable (it
    /// holds the log until it ends).
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

extension MemoryBroker {
    /// A channel set's key: its channels in one order, whatever the order they were named in.
    static func setKey(_ channels: [ChannelName]) -> [ChannelName] {
        channels.sorted { $0.rawValue < $1.rawValue }
    }
}

extension MemoryBroker.State {
    /// Makes `s` read the log of its channel, or of its channel set, from the log's end on
    /// (creating the channels, and the set's log, when absent).
    mutating func addReader(_ s: Subscriber) {
        let names = s.channels
        for name in names { ensureChannel(name) }
        guard names.count > 1 else {
            if let name = names.first { channels[name]!.add(s) }
            return
        }
        let key = MemoryBroker.setKey(names)
        if setLogs[key] == nil {
            setLogs[key] = LogReaders()
            for name in key { channels[name]!.sets.append(key) }
        }
        setLogs[key]!.insert(s)
        for name in key { channels[name]!.setReaders += 1 }
    }

    /// Stops `s` reading; a set's log read by no stream any more goes, and channels with no
    /// reader and nothing retained are forgotten (their floor goes to their bucket, so a resume
    /// stays exact about what was evicted).
    mutating func removeReader(_ s: Subscriber) {
        let names = s.channels
        if names.count == 1 {
            channels[names[0]]?.remove(s)
        } else if names.count > 1 {
            let key = MemoryBroker.setKey(names)
            if setLogs[key]?.remove(s) == true {
                for name in key { channels[name]?.setReaders -= 1 }
                if setLogs[key]?.isEmpty == true {
                    // Not trimmed: `s` may still read what it had (it holds the log until it
                    // ends), and nothing is appended to a log no longer listed.
                    setLogs[key] = nil
                    for name in key { channels[name]?.sets.removeAll { $0 == key } }
                }
            }
        }
        for name in names { forgetIfIdle(name) }
    }
}
