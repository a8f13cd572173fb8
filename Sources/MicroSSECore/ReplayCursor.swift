// Replay through cursors (see docs/DESIGN.md, "Positions, labels and epochs"): a resume does not
// copy its replay into the stream's queue; the stream holds a cursor into the history and takes
// the next events as its queue drains.

/// The rest of one stream's replay, read from where events live a chunk at a time.
package protocol ReplaySource: AnyObject, Sendable {
    /// The next frames of the replay, about `budget` bytes at most but at least one frame while
    /// any remain (a gap event first when events after the cursor were evicted meanwhile), or nil
    /// when the replay is over. Called with no lock of the stream held (a broker's lock comes
    /// before the stream's).
    func next(budget: Int) -> [Frame]?
}

extension SubscriberQueue {
    /// The most bytes one chunk of replay queues (about two of the transport's writes).
    static let replayChunkBytes = 65_536

    /// The log position the stream may read up to: while a replay is pending, the position its
    /// frames are due at.
    var replayLimit: UInt64 { replay == nil ? .max : replayAt }

    /// Starts reading `source` as the stream's replay, due at the stream's place in its log (call
    /// right after ``attach(_:)``, under the lock that orders the log's appends).
    mutating func startReplay(_ source: any ReplaySource) {
        guard phase == .open else { return }
        replay = source
        replayAt = cursor.position
    }

    /// The source to read and the bytes a chunk may take, when fewer than `target` bytes are
    /// queued (the size of the write about to be made: it is filled, and what the socket takes
    /// leaves the queue at once), or nothing queued is due before the replay's position.
    func replayWanted(target: Int) -> (source: any ReplaySource, budget: Int)? {
        guard let replay, phase == .open, queuedBytes < target || nextQueuedAt > replayAt else { return nil }
        let budget = Swift.min(Self.replayChunkBytes, Swift.max(1, target - queuedBytes), freeBytes)
        return (replay, Swift.max(1, budget))
    }

    /// Queues a chunk of `source`'s replay (nil: the replay is over) before anything queued for
    /// a later log position. A chunk over the stream's bound fails it.
    mutating func appendReplay(_ chunk: [Frame]?, from source: any ReplaySource) -> EnqueueAction {
        guard let replay, replay === source, phase == .open else { return .closed }
        guard let chunk else {
            self.replay = nil
            replayAt = .max
            return takeWaiting() ? .wake : .none
        }
        let bytes = chunk.reduce(0) { $0 + $1.bytes.count }
        guard bytes <= limit - pendingBytes else {
            dropped = true
            return .overflow(wake: fail())
        }
        var at = frames.count
        while at > head && frames[at - 1].at > replayAt { at -= 1 }
        // A frame being written stays first.
        if at == head && offset > 0 { at += 1 }
        frames.insert(contentsOf: chunk.map { Queued(frame: $0, at: replayAt) }, at: at)
        queuedBytes += bytes
        return takeWaiting() ? .wake : .none
    }
}

extension Subscriber {
    /// Makes the stream read `source` as its replay; call right after it joined its log, under
    /// the lock that orders the log's appends.
    package func startReplay(_ source: any ReplaySource) {
        locked { $0.startReplay(source) }
        replaying.store(true, ordering: .releasing)
    }

    /// Reads the next chunk of the replay when fewer than `target` bytes (the write about to be
    /// made) are queued: the source is read with no lock of the stream held, then the chunk
    /// queued before anything due later.
    func refillReplay(target: Int) {
        guard replaying.load(ordering: .acquiring) else { return }
        guard let (source, budget) = locked(activity: false, { $0.replayWanted(target: target) }) else { return }
        let chunk = source.next(budget: budget)
        let action = locked(activity: false) { q in
            let action = q.appendReplay(chunk, from: source)
            if q.replay == nil { replaying.store(false, ordering: .releasing) }
            listIfPending(&q)
            return action
        }
        switch action {
        case .overflow(wake: false): cut()
        default: break
        }
    }
}
