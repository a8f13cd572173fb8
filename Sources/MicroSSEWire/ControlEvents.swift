/// The events MicroSSE itself sends, all named `microsse.*`. None carries an `id:`, so the
/// client's last event id stays the last real event's.
package enum ControlEvents {
    /// The `event:` name of the gap signal.
    package static let gapName = "microsse.gap"
    /// The `event:` name of the last event of a stream whose token expired.
    package static let expiredName = "microsse.expired"

    /// Whether `name` is one of the names above, which only MicroSSE may send: a publisher
    /// sending one could make clients believe events were lost, or end their streams.
    package static func isReserved(_ name: String) -> Bool {
        name == gapName || name == expiredName
    }

    /// The first event of a resumed stream that may have missed events: data
    /// `{"lastEventId":"…","reason":"evicted|unknown"}`.
    package static func gap(lastEventID: String, reason: String) -> Event {
        let data = JSON.object([("lastEventId", JSON.quote(lastEventID)), ("reason", JSON.quote(reason))])
        // Both fields are known-valid: the event name is a constant, the data is JSON text.
        return try! Event(data: data, event: gapName)
    }
}
