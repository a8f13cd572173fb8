import MicroSSECore
import MicroSSEWire

/// The one publish path (Swift, C and HTTP): its checks, the broker, the counters.
extension Hub {
    /// Every publish goes through here: the checks below, the broker, the counter.
    func publish(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> String {
        try admit(event)
        let started = ContinuousClock.now
        let receipt = try broker.publishReceipt(event, to: channel)
        countPublish(receipt, since: started)
        return receipt.id
    }

    /// ``publish(_:to:)`` for the HTTP route: returns at once, `completion` gets the receipt or
    /// the error (from a broker's worker thread when the broker is asynchronous).
    func publish(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<PublishReceipt, MicroSSEError>) -> Void
    ) {
        do throws(MicroSSEError) {
            try admit(event)
        } catch {
            completion(.failure(error))
            return
        }
        let started = ContinuousClock.now
        broker.publishReceipt(event, to: channel) { [self] result in
            if case .success(let receipt) = result { countPublish(receipt, since: started) }
            completion(result)
        }
    }

    /// What a publisher may send: data within ``ServerConfiguration/maxPublishBytes``, and no
    /// reserved event name (MicroSSE's own control events, `error` and `open`).
    private func admit(_ event: Event) throws(MicroSSEError) {
        try event.checkSendable(maxBytes: configuration.maxPublishBytes)
    }

    func countPublish(_ receipt: PublishReceipt = PublishReceipt(id: ""), since started: ContinuousClock.Instant) {
        let elapsed = started.duration(to: .now)
        published.add(1, ordering: .relaxed)
        metrics.published.increment()
        if receipt.replicas == 0 { metrics.unreplicated.increment() }
        metrics.publishDuration.recordNanoseconds(
            elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
