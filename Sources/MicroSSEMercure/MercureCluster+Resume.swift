import Dispatch
import MicroSSECore
import MicroSSEWire

/// A resume on a hub that does not hold the id asked for (docs/DESIGN.md, "Mercure"): the
/// update may be on its way from the broker (published to another hub a moment ago), or older
/// than this hub (it joined the cluster later).
extension MercureCluster {
    /// How long a resume waits for this hub to catch up with the broker, at most.
    static let catchUpSeconds = 2
    /// Resumes waiting at once, at most (more are placed with what the hub holds).
    static let maxWaits = 1_024
    /// Resumes asking the broker at once, at most.
    static let maxProbes = 16

    /// Calls `then` (on the cluster's queue) once this hub has read every update the broker had
    /// taken when it was called: a `sync` message of its own went through the broker's one
    /// ordered log and came back (`reached`). After ``catchUpSeconds`` without it, `then` runs
    /// anyway (not reached). One
    /// `sync` is in flight at a time: resumes arriving meanwhile wait for the next one, so a
    /// flood of resumes sends one message per round trip, not one each.
    func caughtUp(_ then: @escaping @Sendable (_ reached: Bool) -> Void) {
        guard link.withLock({ $0 }) != nil else { return then(true) }
        let send = waits.withLock { w -> String? in
            if w.inFlight == nil {
                w.inFlight = MercureText.newID()
                w.waiting = [then]
                return w.inFlight
            }
            guard w.waiting.count + w.next.count < Self.maxWaits else { return nil }
            w.next.append(then)
            return ""
        }
        switch send {
        case nil: then(false)  // too many waiting: placed with what the hub holds
        case ""?: break
        case let nonce?: sendSync(nonce)
        }
    }

    private func sendSync(_ nonce: String) {
        guard let link = link.withLock({ $0 }) else { return }
        say("sync " + hubID + " " + nonce)
        link.queue.asyncAfter(deadline: DispatchTime.now() + DispatchTimeInterval.seconds(Self.catchUpSeconds)) {
            [weak self] in
            self?.synced(nonce, reached: false)
        }
    }

    /// This hub's `sync` came back (or its wait ended): what the broker delivered before it is
    /// read, then the resumes waiting for it go on, and the next `sync` leaves for those that
    /// came since.
    func synced(_ nonce: String, reached: Bool) {
        let (batch, next) = waits.withLock { w -> ([@Sendable (Bool) -> Void], String?) in
            guard w.inFlight == nonce else { return ([], nil) }
            let batch = w.waiting
            w.waiting = []
            w.inFlight = nil
            if !w.next.isEmpty {
                w.inFlight = MercureText.newID()
                w.waiting = w.next
                w.next = []
            }
            return (batch, w.inFlight)
        }
        guard !batch.isEmpty else { return }
        link.withLock { $0 }?.updates.drain()
        for then in batch { then(reached) }
        if let next { sendSync(next) }
    }

    /// Gives `completion` the updates after `id` for a resume this hub cannot place yet: nil
    /// when the hub holds the id once caught up (the bus places it), or when the broker cannot
    /// place it either (the answer is then `earliest`); else what the broker replays after it,
    /// with this hub caught up to at least there.
    func fetch(
        after id: String, holds: @escaping @Sendable (String) -> Bool,
        _ completion: @escaping @Sendable ([MercureBus.Update]?) -> Void
    ) {
        caughtUp { [self] _ in
            guard !holds(id), let link = link.withLock({ $0 }) else { return completion(nil) }
            guard probes.add(1, ordering: .relaxed).newValue <= Self.maxProbes else {
                probes.subtract(1, ordering: .relaxed)
                return completion(nil)
            }
            let probe = Subscriber(channels: [MercureUpdate.updatesChannel], limit: BrokerTap.limit, wholeReplay: true)
            link.broker.subscribe(probe, after: id) { [self] status in
                let bytes = BrokerTap.readAll(probe)
                link.broker.unsubscribe(probe)
                probe.detach()
                probes.subtract(1, ordering: .relaxed)
                guard status == .exact else { return completion(nil) }
                let updates = BrokerTap.blocks(bytes).compactMap { block -> MercureBus.Update? in
                    guard let read = BrokerTap.read(block), let id = read.id,
                        let update = MercureUpdate(envelope: read.data, id: id), let event = try? update.event()
                    else { return nil }
                    return MercureBus.Update(
                        seq: 0, id: id, topics: update.topics.map(Topic.init), isPrivate: update.isPrivate,
                        frame: Frame(bytes: EventEncoder.encode(event), isEvent: true))
                }
                // What the broker replayed is this hub's to deliver once it has read as far; a hub
                // that cannot tell it has (its sync did not come back in time) places the id
                // with what it holds, or answers earliest.
                caughtUp { reached in completion(reached ? updates : nil) }
            }
        }
    }
}
