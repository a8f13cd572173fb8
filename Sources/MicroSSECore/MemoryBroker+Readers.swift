// The in-memory broker's readers: which log each stream reads (see LogReaders.swift).

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
        if let made = SetLog.insert(s, key: MemoryBroker.setKey(names), in: &setLogs) {
            for name in made.key { channels[name]!.sets[made.id] = made }
        }
    }

    /// Stops `s` reading; a set's log read by no stream any more goes, and channels with no
    /// reader and nothing retained are forgotten (their floor goes to their bucket, so a resume
    /// stays exact about what was evicted).
    mutating func removeReader(_ s: Subscriber) {
        let names = s.channels
        if names.count == 1 {
            channels[names[0]]?.remove(s)
        } else if names.count > 1, let gone = SetLog.remove(s, key: MemoryBroker.setKey(names), from: &setLogs) {
            for name in gone.key { channels[name]?.sets[gone.id] = nil }
        }
        for name in names { forgetIfIdle(name) }
    }
}
