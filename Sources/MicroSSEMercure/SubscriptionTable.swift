import Synchronization

/// The active subscriptions of every hub of the cluster (one hub in memory mode), kept from the
/// subscription events every hub sees in the same order, and from the tables hubs hand a hub
/// that joins. Bounded: at most ``maxEntries`` subscriptions and ``maxHubs`` hubs; the
/// subscriptions of a hub not heard from for a while are dropped (it died).
final class SubscriptionTable: Sendable {
    static let maxEntries = 100_000
    static let maxHubs = 1_024

    private struct State {
        /// By topic (``Subscription/iri``).
        var entries: [String: Subscription] = [:]
        /// When each hub was last heard from.
        var seen: [String: ContinuousClock.Instant] = [:]
    }

    private let state = Mutex(State())

    /// Records a subscription event: an active subscription is added (unless the table is
    /// full), a terminated one removed. False when it was not recorded.
    @discardableResult
    func apply(_ announcement: MercureUpdate.Announcement) -> Bool {
        let subscription = announcement.subscription
        return state.withLock { s in
            note(subscription.hub, &s)
            if announcement.active {
                guard s.entries.count < Self.maxEntries || s.entries[subscription.iri] != nil else { return false }
                s.entries[subscription.iri] = subscription
            } else {
                s.entries[subscription.iri] = nil
            }
            return true
        }
    }

    /// Adds subscriptions another hub says it holds.
    func load(_ subscriptions: [Subscription]) {
        state.withLock { s in
            for subscription in subscriptions where s.entries.count < Self.maxEntries {
                s.entries[subscription.iri] = subscription
            }
        }
    }

    /// Notes that `hub` is alive.
    func heard(_ hub: String) {
        state.withLock { note(hub, &$0) }
    }

    private func note(_ hub: String, _ s: inout State) {
        if s.seen[hub] != nil || s.seen.count < Self.maxHubs { s.seen[hub] = .now }
    }

    /// Removes the subscriptions of every hub but `me` not heard from for `silence`, and returns them.
    func expire(silence: Duration, me: String) -> [Subscription] {
        state.withLock { s in
            let deadline = ContinuousClock.now - silence
            let dead = Set(s.seen.filter { $0.key != me && $0.value < deadline }.map(\.key))
            guard !dead.isEmpty else { return [] }
            for hub in dead { s.seen[hub] = nil }
            let gone = s.entries.values.filter { dead.contains($0.hub) }
            for subscription in gone { s.entries[subscription.iri] = nil }
            return gone
        }
    }

    /// Removes the subscriptions of `hub` (it said goodbye), and returns them.
    func forget(_ hub: String) -> [Subscription] {
        state.withLock { s in
            s.seen[hub] = nil
            let gone = s.entries.values.filter { $0.hub == hub }
            for subscription in gone { s.entries[subscription.iri] = nil }
            return gone
        }
    }

    /// The subscriptions held by streams of `hub`.
    func held(by hub: String) -> [Subscription] {
        state.withLock { s in s.entries.values.filter { $0.hub == hub } }
    }

    /// The subscription whose percent-decoded topic is `path`, if any.
    func subscription(decodedPath path: String) -> Subscription? {
        state.withLock { s in s.entries.values.first { $0.decodedPath == path } }
    }

    /// Every subscription (`path` nil) or those of the matcher collection whose percent-decoded
    /// path is `path`, ordered by topic.
    func subscriptions(decodedCollection path: String?) -> [Subscription] {
        let found = state.withLock { s in s.entries.values.filter { path == nil || $0.decodedCollection == path } }
        return found.sorted { $0.iri < $1.iri }  // outside the lock
    }

    var count: Int { state.withLock { $0.entries.count } }
}
