/// The events MicroSSE itself sends, all named `microsse.*`. None carries an `id:`, so the
/// client's last event id stays the last real event's.
package enum ControlEvents {
    /// The `event:` name of the gap signal.
    package static let gapName = "microsse.gap"
    /// The `event:` name of the last event of a stream whose token expired.
    package static let expiredName = "microsse.expired"

    /// Names a browser's `EventSource` gives meanings of its own: it dispatches an event named
    /// `error` to every `error` listener (as if the connection had failed) and one named `open`
    /// to every `open` listener. `message` is not among them: it is the default type.
    package static let browserNames: Set<String> = ["error", "open"]

    /// Whether a publisher may not use `name`: one of MicroSSE's own names above (a publisher
    /// sending one could make clients believe events were lost, or end their streams) or one of
    /// ``browserNames``.
    package static func isReserved(_ name: String) -> Bool {
        reservedReason(name) != nil
    }

    /// Why a publisher may not use `name`, as one line; nil when it may.
    package static func reservedReason(_ name: String) -> String? {
        if name == gapName || name == expiredName {
            return "event name \(name) is reserved for MicroSSE's own events"
        }
        if browserNames.contains(name) {
            return "event name \(name) is reserved: EventSource hands it to its own '\(name)' handlers"
        }
        return nil
    }

    /// The first event of a resumed stream that may have missed events: data
    /// `{"lastEventId":"…","reason":"evicted|unknown"}`.
    package static func gap(lastEventID: String, reason: String) -> Event {
        let data = JSON.object([("lastEventId", JSON.quote(lastEventID)), ("reason", JSON.quote(reason))])
        // Both fields are known-valid: the event name is a constant, the data is JSON text.
        return try! Event(data: data, event: gapName)
    }
}
