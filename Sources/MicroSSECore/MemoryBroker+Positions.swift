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
        guard callerGiven && channelCount > 1 else { return frame }
        return frame.withID(HubID.encode(HubPosition(epoch: epoch, major: seq)))
    }
}
