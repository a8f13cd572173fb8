/// The ticker's side of ``Subscriber``: heartbeats and stalls, the pending set's visit, the
/// liveness probe, and the release pass over idle streams.
extension Subscriber {
    /// The stall watch's visit of this stream alone (see ``SubscriberQueue/tick(stallTicks:)``),
    /// whatever it has pending: a stream it fails is resumed so its reader closes it, or cut at
    /// once when not suspended. The ticker visits through ``visitPending(_:stallTicks:)``, which
    /// takes only listed streams and batches the resumes; tests drive one stream's stall with this.
    @discardableResult
    package func tick(stallTicks: Int) -> SubscriberQueue.TickAction {
        let action = locked(activity: false) { q in
            let action = q.tick(stallTicks: stallTicks)
            listIfPending(&q)
            return action
        }
        if action == .stalled(wake: false) { cut() }
        if action.needsWake { wake() }
        return action
    }

    /// Queues `frame`, a heartbeat, on a stream the heartbeat pass could not write to (see
    /// ``SubscriberQueue/heartbeat(_:)``). The caller resumes the connection when the answer
    /// asks for it (the pass resumes its streams back to back).
    package func queueHeartbeat(_ frame: Frame) -> SubscriberQueue.TickAction {
        locked(activity: false) { q in
            let action = q.heartbeat(frame)
            listIfPending(&q)
            return action
        }
    }

    /// The ticker's heartbeat pass over the streams of `slots` (see ``HeartbeatSlots``): the
    /// table writes `heartbeat` to every idle stream's socket without visiting the stream;
    /// the streams it could not write to get it here, and their connections are resumed back
    /// to back, so libmicrohttpd's polling thread finds them together (each turn of its loop
    /// walks the whole suspended list once, however many were resumed). Returns how many
    /// streams were visited.
    @discardableResult
    package static func heartbeat(_ slots: HeartbeatSlots, frame: Frame) -> Int {
        let visiting = slots.pass(heartbeat: frame.bytes)
        var toWake: [Subscriber] = []
        for item in visiting {
            switch item {
            case .queue(let sub):
                // Not writable directly (or the socket was full): queued, and resumed.
                if sub.queueHeartbeat(frame).needsWake { toWake.append(sub) }
            case .rest(let sub):
                // Cut short: the stream's next section takes the rest; send it now.
                if sub.writeUnsent() { sub.hooks.withLock { $0 }?.scheduleFlush() }
            case .failed(let sub):
                sub.fail()
            }
        }
        for sub in toWake { sub.wake() }
        return visiting.count
    }

    /// The ticker's per-tick visit of the streams listed in `set` (those that had bytes
    /// pending since the previous visit): a stream that still has bytes pending gets a visit of
    /// the stall watch (when `stallTicks` > 0) and stays listed; one that has drained leaves
    /// the set. Resumes are batched as in ``heartbeat(_:frame:)``. Returns how many streams were
    /// visited.
    @discardableResult
    package static func visitPending(_ set: PendingStreams, stallTicks: Int) -> Int {
        let visiting = set.takeAll()
        var toWake: [Subscriber] = []
        for sub in visiting {
            let action = sub.locked(activity: false) { q -> SubscriberQueue.TickAction in
                var action = SubscriberQueue.TickAction.none
                if stallTicks > 0 && q.pendingBytes > 0 {
                    action = q.tick(stallTicks: stallTicks)
                }
                if q.keepPendingListing() { set.insert(sub) }
                return action
            }
            if action == .stalled(wake: false) { sub.cut() }
            if action.needsWake { toWake.append(sub) }
        }
        for sub in toWake { sub.wake() }
        return visiting.count
    }

    /// The peer closed its sending side (a half-close or a full close): writes `probe` once so a
    /// closed peer answers with a reset while a half-closed reader keeps its stream. See
    /// ``SubscriberQueue/probe(_:)``.
    package func probePeer(_ probe: Frame) {
        let needsWake = locked { q in
            let needsWake = q.probe(probe)
            listIfPending(&q)
            return needsWake
        }
        if needsWake { wake() }
    }

    /// A release pass's visit (see ``SubscriberQueue/visitIdle()``): gives back to the kernel the
    /// whole pages inside the write region the content reader was last handed, when the
    /// connection has stayed suspended since the previous visit. `release` runs under the queue's
    /// lock, so no reader and no resume can touch the region meanwhile; the pages read as zeros
    /// when next touched. `release` gets the pages' address and size (the transport owns the
    /// memory and turns them into a pointer). Returns the bytes given back and whether to visit
    /// the stream again.
    package func visitIdle(
        pageSize: Int, _ release: (_ address: UInt, _ count: Int) -> Void
    ) -> (released: Int, keep: Bool) {
        locked(activity: false) { q in
            switch q.visitIdle() {
            case .drop: return (0, false)
            case .keep: return (0, true)
            case .release(let address, let count):
                guard let pages = Self.wholePages(address: address, count: count, pageSize: pageSize),
                    pages.address != 0
                else { return (0, false) }
                assert(
                    pages.address >= address && pages.address + UInt(pages.count) <= address + UInt(count),
                    "released range outside the reader's buffer")
                // Already given back and not written since: nothing to do (no system call).
                if let last = q.untouchedRelease, last == pages { return (0, false) }
                release(pages.address, pages.count)
                q.noteReleased(address: pages.address, count: pages.count)
                return (pages.count, false)
            }
        }
    }

    /// The page-aligned interior of `[address, address + count)`, or nil when it holds no whole page.
    package static func wholePages(address: UInt, count: Int, pageSize: Int) -> (address: UInt, count: Int)? {
        guard pageSize > 0, count > 0 else { return nil }
        let page = UInt(pageSize)
        let (end, overflow) = address.addingReportingOverflow(UInt(count))
        guard !overflow, address <= UInt.max - (page - 1) else { return nil }
        let first = (address + page - 1) / page * page
        let last = end / page * page
        guard last > first else { return nil }
        return (first, Int(last - first))
    }
}
