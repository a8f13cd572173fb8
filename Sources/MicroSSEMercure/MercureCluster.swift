import Dispatch
import MicroSSE
import MicroSSECore
import MicroSSEWire
import Synchronization

/// How updates reach the hub's ``MercureBus``, and how the subscriptions table is kept
/// (docs/DESIGN.md, "Mercure").
///
/// In memory mode an update goes to the bus at once. With a shared broker (Redis), an update is
/// published as an event of ``MercureUpdate/updatesChannel`` (the envelope as data, its id as
/// label) and every hub, this one included, feeds the bus from its own ``BrokerTap`` of that
/// channel: every hub indexes, filters and stores the same updates in the same order, so private
/// rules hold on each and an id is placed on any hub that has seen it. Hubs announce themselves on
/// ``MercureUpdate/hubsChannel`` (a beat every ``beatSeconds``; a hub that joins says hello and
/// the others hand it their subscriptions); a hub silent for ``silenceSeconds`` is taken as dead
/// and its subscriptions end.
final class MercureCluster: Sendable {
    static let beatSeconds = 5
    static let silenceSeconds = 20
    /// The most bytes of one table message (a hub's subscriptions, handed over in parts).
    static let maxTableMessage = 48 << 10

    /// This hub's identity in the cluster (and in its subscriptions' records).
    let hubID = MercureText.newID()
    let bus: MercureBus
    let table = SubscriptionTable()
    let legacy: Bool

    struct Link {
        let broker: any EventBroker
        let updates: BrokerTap
        let hubs: BrokerTap
        let queue: DispatchQueue
    }

    let link = Mutex<Link?>(nil)
    /// Resumes waiting for this hub to catch up with the broker (``caughtUp(_:)``).
    let waits = Mutex(Waits())
    struct Waits {
        /// The nonce of the `sync` in flight, and the resumes waiting for it.
        var inFlight: String?
        var waiting: [@Sendable (Bool) -> Void] = []
        /// Resumes that came after it left: they wait for the next one.
        var next: [@Sendable (Bool) -> Void] = []
    }
    /// Resumes asking the broker to place an id now (``fetch(after:_:)``).
    let probes = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)
    let log = Mutex<(@Sendable (String) -> Void)?>(nil)

    init(bus: MercureBus, legacy: Bool) {
        self.bus = bus
        self.legacy = legacy
    }

    /// Follows the broker's channels when it is shared with other hubs.
    func start(_ host: RouteSetHost, log: @escaping @Sendable (String) -> Void) {
        guard host.isClustered else { return }
        self.log.withLock { $0 = log }
        let broker = host.broker
        let queue = DispatchQueue(label: "microsse.mercure.cluster")
        let updates = BrokerTap(channel: MercureUpdate.updatesChannel, broker: broker, queue: queue, log: log) {
            [weak self] read in
            if read.type == ControlEvents.gapName {
                // The broker's reader lost its place (Redis trimmed entries it had not read).
                return log("mercure: this hub missed updates from Redis (its reader lost its place)")
            }
            guard let self, let id = read.id, let update = MercureUpdate(envelope: read.data, id: id) else { return }
            apply(update)
        }
        let hubs = BrokerTap(channel: MercureUpdate.hubsChannel, broker: broker, queue: queue, log: log) {
            [weak self] read in self?.hubMessage(read.data)
        }
        link.withLock { $0 = Link(broker: broker, updates: updates, hubs: hubs, queue: queue) }
        updates.start()
        hubs.start()
        say("hello " + hubID)
        queue.asyncAfter(deadline: .now() + .seconds(Self.beatSeconds)) { [weak self] in self?.beat() }
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        guard let link = link.withLock({ $0 }) else { return }
        // The streams close after this (the broker is shut down by then): the other hubs end
        // this hub's subscriptions on its goodbye.
        // Waited for (at most a second): the broker is shut down right after.
        let sent = DispatchSemaphore(value: 0)
        say("bye " + hubID) { sent.signal() }
        _ = sent.wait(timeout: .now() + .seconds(1))
        link.updates.stop()
        link.hubs.stop()
    }

    var isClustered: Bool { link.withLock { $0 != nil } }

    /// Delivers an update to this hub's streams (and records a subscription event).
    func apply(_ update: MercureUpdate) {
        if let announcement = update.announcement { table.apply(announcement) }
        guard let event = try? update.event() else { return }
        bus.publish(event, topics: update.topics.map(Topic.init), isPrivate: update.isPrivate)
    }

    /// Publishes a subscription event for `subscription` (private, type `mercure` in draft-08).
    func announce(_ subscription: Subscription, active: Bool) {
        let update = MercureUpdate(
            id: MercureText.newID(), topics: [subscription.iri], isPrivate: true, type: legacy ? nil : "mercure",
            data: subscription.document(active: active),
            announcement: .init(active: active, subscription: subscription))
        guard let link = link.withLock({ $0 }) else {
            apply(update)
            return
        }
        guard !stopped.load(ordering: .relaxed) else { return }  // the other hubs know (bye)
        let log = self.log.withLock { $0 }
        do throws(MicroSSEError) {
            let event = try Event(data: update.envelope, id: update.id)
            link.broker.publish(event, to: MercureUpdate.updatesChannel) { result in
                if case .failure(let error) = result {
                    log?("mercure: a subscription event was lost: \(error.message)")
                }
            }
        } catch {
            log?("mercure: a subscription event was not sent: \(error.message)")
        }
    }

    // MARK: Hubs

    func say(_ text: String, then: @escaping @Sendable () -> Void = {}) {
        guard let link = link.withLock({ $0 }), let event = try? Event(data: text) else { return then() }
        let log = self.log.withLock { $0 }
        link.broker.publish(event, to: MercureUpdate.hubsChannel) { result in
            if case .failure(let error) = result {
                log?("mercure: a message to the other hubs was lost: \(error.message)")
            }
            then()
        }
    }

    private func beat() {
        guard !stopped.load(ordering: .relaxed), let link = link.withLock({ $0 }) else { return }
        say("beat " + hubID)
        ended(table.expire(silence: .seconds(Self.silenceSeconds), me: hubID))
        link.queue.asyncAfter(deadline: .now() + .seconds(Self.beatSeconds)) { [weak self] in self?.beat() }
    }

    /// Subscriptions of a hub that went (stopped, or silent: it died) ended with it: announced
    /// to this hub's streams only (every hub does the same).
    private func ended(_ subscriptions: [Subscription]) {
        for subscription in subscriptions {
            apply(
                MercureUpdate(
                    id: MercureText.newID(), topics: [subscription.iri], isPrivate: true,
                    type: legacy ? nil : "mercure", data: subscription.document(active: false)))
        }
    }

    /// `bye HUB`, `beat HUB`, `hello HUB` (answered with this hub's table), `table HUB` and one
    /// subscription per line, `sync HUB NONCE` (this hub's own: it has read what came before).
    private func hubMessage(_ text: String) {
        let firstLine = text.prefix { $0 != "\n" }
        let words = firstLine.split(separator: " ", maxSplits: 2)
        guard words.count >= 2 else { return }
        let hub = String(words[1])
        if words[0] == "sync", words.count == 3, hub == hubID {
            synced(String(words[2]), reached: true)
            return
        }
        guard hub != hubID else { return }
        if words[0] == "bye" { return ended(table.forget(hub)) }
        table.heard(hub)
        switch words[0] {
        case "hello":
            // What came before the hello in the broker's log is read first: the table sent
            // holds every subscription this hub announced before it.
            link.withLock { $0 }?.updates.drain()
            sendTable()
        case "table":
            let lines = text.split(separator: "\n").dropFirst()
            table.load(lines.compactMap { Subscription(line: $0) }.filter { $0.hub == hub })
        default:
            break
        }
    }

    private func sendTable() {
        var message = ""
        for subscription in table.held(by: hubID) {
            let line = subscription.line
            if !message.isEmpty && message.utf8.count + line.utf8.count > Self.maxTableMessage {
                say(message)
                message = ""
            }
            if message.isEmpty { message = "table " + hubID }
            message += "\n" + line
        }
        if !message.isEmpty { say(message) }
    }
}
