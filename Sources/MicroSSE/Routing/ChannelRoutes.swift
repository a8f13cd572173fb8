import MicroSSECore
import MicroSSETransport
import MicroSSEWire

/// The hub's routes: `GET /events/{channel}`, `GET /events?channel=a&channel=b` and
/// `POST /events/{channel}`.
enum ChannelRoutes {
    /// The response header that says a resumed stream may have missed events; its value is the
    /// reason (`evicted` or `unknown`), the same as the `microsse.gap` event's `reason`.
    static let gapHeader = "MicroSSE-Gap"
    /// On a publish reply: how many replicas of the broker confirmed the event.
    static let replicatedHeader = "MicroSSE-Replicated"

    static func routes(publishing: Bool) -> [Route] {
        [
            Route(match: .exact("/events"), methods: ["GET"]) { request, router in
                subscribe(request, names: request.queryValues("channel"), router)
            },
            Route(match: .prefix("/events/"), methods: publishing ? ["GET", "POST"] : ["GET"]) { request, router in
                let name = String(request.path.dropFirst("/events/".count))
                if name.contains("/") { return .response(.text("not found: \(request.path)", status: 404)) }
                if request.method == "POST" { return publish(request, name: name, router) }
                return subscribe(request, names: [name], router)
            },
        ]
    }

    private static func subscribe(_ request: Request, names: [String], _ router: Router) -> TransportReply {
        guard !names.isEmpty else {
            return .response(
                .text("name at least one channel: /events/{channel} or /events?channel=a&channel=b", status: 400))
        }
        let limit = router.hub.configuration.maxChannelsPerStream
        var channels: [ChannelName] = []
        var seen = Set<ChannelName>()
        for name in names {
            do throws(MicroSSEError) {
                let channel = try ChannelName(name)
                if seen.insert(channel).inserted { channels.append(channel) }
            } catch {
                return .response(.text(error.message, status: 400))
            }
        }
        if channels.count > limit {
            let text =
                "too many channels: \(channels.count) distinct channels named, "
                + "at most \(limit) per stream (maxChannelsPerStream)"
            return .response(.text(text, status: 400))
        }
        if let refusal = router.authorize(request, .subscribe(channels: channels.map(\.rawValue))) {
            return .response(refusal)
        }
        guard let subscriber = router.admit(channels: channels) else { return Router.full }
        let lastEventID = (request.header("Last-Event-ID") ?? request.queryValue("lastEventId")).flatMap {
            $0.isEmpty ? nil : $0
        }
        guard let lastEventID, router.hub.broker.isAsynchronous else {
            let status = router.hub.broker.subscribe(subscriber, after: lastEventID)
            return open(subscriber, status, request, channels, router)
        }
        // The broker registers the subscriber for live events now (buffering them) and fetches
        // the replay off libmicrohttpd's thread; the stream opens once the replay is queued.
        let later = DeferredReply()
        router.hub.broker.subscribe(subscriber, after: lastEventID) { [channels] status in
            later.complete(with: open(subscriber, status, request, channels, router))
        }
        return .deferred(later)
    }

    private static func open(
        _ subscriber: Subscriber, _ status: ResumeStatus, _ request: Request, _ channels: [ChannelName],
        _ router: Router
    ) -> TransportReply {
        var headers = Router.streamHeaders
        if case .gap(let reason) = status {
            headers.append((gapHeader, reason.rawValue))
        }
        let client = Client(request: request, subscriber: subscriber, hub: router.hub)
        router.hub.jwt?.watch(client, request: request, channels: channels.map(\.rawValue))
        return router.openStream(client, headers: headers)
    }

    /// Checks and publishes; an asynchronous broker's answer comes later (``DeferredReply``).
    private static func publish(_ request: Request, name: String, _ router: Router) -> TransportReply {
        let event: Event
        let channel: ChannelName
        do throws(MicroSSEError) {
            channel = try ChannelName(name)
            if let refusal = router.authorize(request, .publish(channel: channel.rawValue)) {
                return .response(refusal)
            }
            let givenID = request.queryValue("id")
            if givenID?.isEmpty == true {
                // Written as `id:`, an empty id would clear every subscriber's last event id.
                return .response(.text("id must not be empty (leave it out to have one assigned)", status: 400))
            }
            event = try Event(utf8Data: request.body, event: request.queryValue("event"), id: givenID)
        } catch {
            return .response(answer(.failure(error)))
        }
        guard router.hub.broker.isAsynchronous else {
            do throws(MicroSSEError) {
                return .response(answer(.success(PublishReceipt(id: try router.hub.publish(event, to: channel)))))
            } catch {
                return .response(answer(.failure(error)))
            }
        }
        let later = DeferredReply()
        router.hub.publish(event, to: channel) { result in later.complete(with: .response(answer(result))) }
        return .deferred(later)
    }

    /// `202` with the id; from a broker with replicas, `MicroSSE-Replicated: N` says how many
    /// confirmed the event (0: its primary alone holds it, and a crash can lose it).
    private static func answer(_ result: Result<PublishReceipt, MicroSSEError>) -> Response {
        switch result {
        case .success(let receipt):
            var r = Response.json(JSON.object([("id", JSON.quote(receipt.id))]), status: 202)
            if let n = receipt.replicas { r.headers.append((replicatedHeader, String(n))) }
            return r
        case .failure(let error):
            switch error.code {
            case .unavailable:
                var r = Response.text(error.message, status: 503)
                r.headers.append(("Retry-After", "1"))
                return r
            case .payloadTooLarge: return .text(error.message, status: 413)
            default: return .text(error.message, status: 400)
            }
        }
    }
}
