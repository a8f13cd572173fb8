/// The ticker's side of ``Subscriber``: heartbeats and stalls, the pending set's visit, and the
/// liveness probe.
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

    /// Queues `frame`, a heartbeat, on a stream the transport's heartbeat pass could not write
    /// to (see ``SubscriberQueue/heartbeat(_:)``). The caller resumes the connection when the
    /// answer asks for it (the pass resumes its streams back to back).
    package func queueHeartbeat(_ frame: Frame) -> SubscriberQueue.TickAction {
        locked(activity: false) { q in
            let action = q.heartbeat(frame)
            listIfPending(&q)
            return action
        }
    }

    /// The ticker's per-tick visit of the streams listed in `set` (those that had bytes
    /// pending since the previous visit): a stream that still has bytes pending gets a visit of
    /// the stall watch (when `stallTicks` > 0) and stays listed; one that has drained leaves
    /// the set. Resumes are batched (each turn of the transport's loop then finds them together). Returns how many streams were
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
}
