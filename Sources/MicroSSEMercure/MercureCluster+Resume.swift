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
    /// ordered log and came back. After ``catchUpSeconds`` without it, `then` runs anyway.
    func caughtUp(_ then: @escaping @Sendable () -> Void) {
        guard let link = link.withLock({ $0 }) else { return then() }
        let nonce = MercureText.newID()
        let waiting = waits.withLock { w -> Bool in
            guard w.count < Self.maxWaits else { return false }
            w[nonce] = then
            return true
        }
        guard waiting else { return then() }
        say("sync " + hubID + " " + nonce)
        link.queue.asyncAfter(deadline: DispatchTime.now() + DispatchTimeInterval.seconds(Self.catchUpSeconds)) {
            [weak self] in
            self?.synced(nonce)
        }
    }

    /// This hub's `sync` came back (or its wait ended): what the broker delivered before it is
    /// read, then the waiting resume goes on.
    func synced(_ nonce: String) {
        guard let then = waits.withLock({ $0.removeValue(forKey: nonce) }) else { return }
        link.withLock { $0 }?.updates.drain()
        then()
    }

    /// Gives `completion` the updates after `id` for a resume this hub cannot place yet: nil
    /// when the hub holds the id once caught up (the bus places it), or when the broker cannot
    /// place it either (the answer is then `earliest`); else what the broker replays after it,
    /// with this hub caught up to at least there.
    func fetch(
        after id: String, holds: @escaping @Sendable (String) -> Bool,
        _ completion: @escaping @Sendable ([MercureBus.Update]?) -> Void
    ) {
        caughtUp { [self] in
            guard !holds(id), let link = link.withLock({ $0 }) else { return completion(nil) }
            guard probes.add(1, ordering: .relaxed).newValue <= Self.maxProbes else {
                probes.subtract(1, ordering: .relaxed)
                return completion(nil)
            }
            let probe = Subscriber(channels: [MercureUpdate.updatesChannel], limit: BrokerTap.limit)
            link.broker.subscribe(probe, after: id) { [self] status in
                var bytes: [UInt8] = []
                while case .wrote = probe.read(max: 256 << 10, write: { bytes += $0 }, onSuspend: {}) {}
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
                // What the broker replayed is this hub's to deliver once it has read as far.
                caughtUp { completion(updates) }
            }
        }
    }
}
