import Synchronization

// The in-memory broker's positions and labels (see docs/DESIGN.md, "Positions, labels and
// epochs"): what is kept here besides the history.

extension MemoryBroker {
    /// A label in one channel: labels are the application's, and two channels may share them.
    struct LabelKey: Hashable {
        let channel: ChannelName
        let label: String
    }
}

extension MemoryBroker.Entry {
    /// The frame a stream of `channelCount` channels gets: a stream of one channel sees the
    /// stored frame (its label when it has one), a stream of several the position.
    func frame(for channelCount: Int, epoch: String) -> Frame {
        guard callerID != nil && channelCount > 1 else { return frame }
        return frame.withID(HubID.encode(HubPosition(epoch: epoch, major: seq)))
    }
}

/// One stream's replay in the in-memory broker: its channels' retained events after `after` and
/// up to `upTo` (the last position published when it subscribed: later ones reach it through its
/// log), merged in publish order, read a chunk at a time under the broker's lock.
final class MemoryReplay: ReplaySource {
    let broker: MemoryBroker
    let channels: [ChannelName]
    let upTo: UInt64
    /// The frames one chunk holds at most (its bytes are bounded by the caller's budget).
    static let chunkFrames = 2_048
    private struct Place {
        /// The last position replayed.
        var after: UInt64
        /// The highest channel floor the stream was already told about (its gap event).
        var reported: UInt64
        /// Whether an event went out since the last gap event (a second gap in a row says nothing).
        var sentSinceGap: Bool
    }
    private let place: Mutex<Place>

    init(broker: MemoryBroker, channels: [ChannelName], after: UInt64, upTo: UInt64, reported: UInt64) {
        self.broker = broker
        self.channels = channels
        self.upTo = upTo
        self.place = Mutex(Place(after: after, reported: reported, sentSinceGap: reported == 0))
    }

    func next(budget: Int) -> ReplayChunk {
        let (after, reported) = place.withLock { ($0.after, $0.sentSinceGap ? $0.reported : .max) }
        guard let (frames, last, floor) = broker.replayChunk(self, after: after, reported: reported, budget: budget)
        else { return .done }
        place.withLock {
            if last > $0.after { $0.sentSinceGap = true }
            $0.after = last
            $0.reported = max($0.reported, floor == .max ? 0 : floor)
        }
        return .frames(frames)
    }
}

extension MemoryBroker {
    /// The next chunk of `replay` after position `after`: a gap event first when a channel
    /// evicted events after it that the stream was not yet told about (a floor above `reported`),
    /// then retained events in publish order, up to `budget` bytes (at least one event). Returns
    /// the frames, the last position taken and the highest floor seen; nil when nothing is left.
    func replayChunk(
        _ replay: MemoryReplay, after: UInt64, reported: UInt64, budget: Int
    ) -> (frames: [Frame], last: UInt64, floor: UInt64)? {
        let epoch = self.epoch
        return state.withLock { s in
            // Each channel's retained entries after `after` (a slice of its history), and the
            // position of the next one (.max: none left up to `upTo`).
            var heads: [ArraySlice<Entry>] = []
            var next: [UInt64] = []
            var floor = reported
            for name in replay.channels {
                let channel = s.channels[name]
                let f = channel?.floor ?? s.absentFloor(name)
                if f > after { floor = max(floor, f) }
                guard let retained = channel?.retained else { continue }
                // The first entry after `after` (history is in position order).
                var low = retained.startIndex
                var high = retained.endIndex
                while low < high {
                    let mid = (low + high) / 2
                    if retained[mid].seq <= after { low = mid + 1 } else { high = mid }
                }
                if low < retained.endIndex && retained[low].seq <= replay.upTo {
                    heads.append(retained[low...])
                    next.append(retained[low].seq)
                }
            }
            var frames: [Frame] = []
            if floor > reported {
                let id = HubID.encode(HubPosition(epoch: epoch, major: after))
                frames.append(ResumeStatus.gapFrame(lastEventID: id, reason: .evicted))
            }
            var last = after
            var bytes = 0
            while frames.count < MemoryReplay.chunkFrames && (bytes < budget || frames.isEmpty) {
                var pick = -1
                var low = UInt64.max
                for i in next.indices where next[i] < low {
                    low = next[i]
                    pick = i
                }
                guard pick >= 0 else { break }
                let entry = heads[pick][heads[pick].startIndex]
                let frame = entry.frame(for: replay.channels.count, epoch: epoch)
                if bytes + frame.bytes.count > budget && bytes > 0 { break }
                heads[pick] = heads[pick].dropFirst()
                next[pick] = heads[pick].first.map { $0.seq <= replay.upTo ? $0.seq : .max } ?? .max
                frames.append(frame)
                bytes += frame.bytes.count
                last = entry.seq
            }
            return frames.isEmpty ? nil : (frames, last, floor)
        }
    }
}
