import MicroSSE
import MicroSSECore
import MicroSSETransport
import MicroSSEWire

/// Sending updates (to the bus, or to every hub through the broker) and the active
/// subscriptions: the subscriptions a stream makes and the subscriptions API.
extension MercureRoutes {
    /// Sends a checked update and answers the publisher with its id: at once in memory mode;
    /// once the broker has taken it in a cluster.
    func send(_ update: MercureUpdate, _ host: RouteSetHost) -> TransportReply {
        let started = ContinuousClock.now
        do throws(MicroSSEError) {
            let event = try update.event()
            guard cluster.isClustered else {
                bus.publish(event, topics: update.topics.map(Topic.init), isPrivate: update.isPrivate)
                host.countPublish(since: started)
                return .response(Self.published(update.id))
            }
        } catch {
            return .response(.text(error.message, status: 400))
        }
        let envelope = update.envelope
        guard envelope.utf8.count <= maxPublishBytes else {
            let text = "the update with its topics is larger than \(maxPublishBytes) bytes (--max-publish-bytes)"
            return .response(.text(text, status: 413))
        }
        let event: Event
        do throws(MicroSSEError) {
            event = try Event(data: envelope, id: update.id)
        } catch {
            return .response(.text(error.message, status: 400))
        }
        let later = DeferredReply()
        host.publish(event, to: MercureUpdate.updatesChannel) { result in
            switch result {
            case .success:
                later.complete(with: .response(Self.published(update.id)))
            case .failure(let error):
                let status =
                    switch error.code {
                    case .unavailable: 503
                    case .payloadTooLarge: 413
                    default: 400
                    }
                later.complete(with: .response(.text(error.message, status: status)))
            }
        }
        return .deferred(later)
    }

    /// The most subscriptions one collection response lists (the first by topic).
    static let maxListed = 10_000

    static func published(_ id: String) -> Response {
        Response(status: 200, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(id.utf8))
    }

    /// The subscriptions a stream makes, one per matcher, under one new subscriber id, each with
    /// its payload from the token.
    func subscriptions(_ matchers: Matchers, _ grants: Grants?) -> [Subscription] {
        let subscriber = MercureText.newID()
        let exact: String? = settings.legacy ? nil : "exact"
        var list: [(type: String?, match: String)] = matchers.all ? [(exact, "*")] : []
        list += matchers.exact.map { String(decoding: $0.bytes, as: UTF8.self) }.sorted().map { (exact, $0) }
        list += matchers.templates.map { String(decoding: $0.source.bytes, as: UTF8.self) }.sorted().map { (nil, $0) }
        list += matchers.patterns.map { String(decoding: $0.source.bytes, as: UTF8.self) }.sorted().map {
            ("urlpattern", $0)
        }
        return list.map {
            Subscription(
                hub: cluster.hubID, matchType: $0.type, match: $0.match, subscriber: subscriber,
                payload: grants?.payload(for: $0.match))
        }
    }

    /// `GET /.well-known/mercure/subscriptions[/{match_type}/{match}[/{subscriber}]]` (draft-07:
    /// `[/{topic}[/{subscriber}]]`), authorized by the token's `subscribe` grant on the path.
    func subscriptionsAPI(_ request: Request, _ host: RouteSetHost) -> Response {
        guard request.method == "GET" || request.method == "HEAD" else {
            var r = Response.text("method not allowed", status: 405)
            r.headers.append(("Allow", "GET"))
            return r
        }
        if let refusal = host.authorize(request, .route(path: request.path), publishing: false) { return refusal }
        let grants: Grants
        switch self.grants(request) {
        case .refused(let refusal): return refusal
        case .ok(nil): return challenge(401, nil, "the subscriptions API needs a token")
        case .ok(let g?): grants = g
        }
        // libmicrohttpd hands the path percent-decoded: it is found among the subscriptions'
        // decoded topics, and authorized in its encoded form, as subscription events are.
        let path = request.path
        let table = cluster.table
        let topic: String
        var body: [(String, String)] = []
        var single: Subscription?
        var members: [Subscription] = []
        if path == Subscription.basePath {
            topic = path
            members = table.subscriptions(decodedCollection: nil)
        } else if let found = table.subscription(decodedPath: path) {
            topic = found.iri
            single = found
        } else {
            members = table.subscriptions(decodedCollection: path)
            topic = members.first?.collection ?? path
        }
        guard grants.subscribe.matches(Topic(topic)) else {
            return challenge(403, "insufficient_scope", "the token does not grant subscribe on \(topic)")
        }
        guard single != nil || !members.isEmpty || path == Subscription.basePath else {
            return .text("no active subscription at \(path)", status: 404)
        }
        let lastID = bus.lastID ?? MercureBus.earliest
        if settings.legacy {
            body.append(("@context", JSON.quote("https://mercure.rocks/")))
        }
        if let single {
            let document = single.document(active: true, nested: settings.legacy)
            body = settings.legacy ? body + [("lastEventID", JSON.quote(lastID))] : []
            body.append(("", document))
        } else {
            body += [
                ("id", JSON.quote(topic)), ("type", JSON.quote(settings.legacy ? "Subscriptions" : "subscriptions")),
            ]
            if settings.legacy { body.append(("lastEventID", JSON.quote(lastID))) }
            // Truncated past a bound (the draft allows it): a response stays a few MiB at most.
            let documents = members.prefix(Self.maxListed).map { $0.document(active: true, nested: true) }
            body.append(("subscriptions", "[" + documents.joined(separator: ",") + "]"))
        }
        var headers: [(String, String)] = [
            ("Content-Type", settings.legacy ? "application/ld+json" : "application/json"),
            ("Cache-Control", "must-revalidate"),
            ("ETag", "\"" + Self.etag(lastID) + "\""),
        ]
        if !settings.legacy {
            let quoted = lastID.replacingQuotes()
            headers.append(
                (
                    "Link",
                    "<\(MercureText.hubPath)>; rel=\"mercure\"; last-event-id=\"\(quoted)\"; type=\"mercure\"; "
                        + "content-type=\"application/json\""
                ))
        }
        let text: String
        if body.last?.0 == "" {
            // A single subscription: its document as is (draft-07 adds the cursor at its root).
            let document = body.removeLast().1
            text = body.isEmpty ? document : "{" + Self.members(body) + "," + document.dropFirst()
        } else {
            text = JSON.object(body)
        }
        return Response(status: 200, headers: headers, body: request.method == "HEAD" ? [] : Array(text.utf8))
    }

    private static func members(_ pairs: [(String, String)]) -> String {
        pairs.map { JSON.quote($0.0) + ":" + $0.1 }.joined(separator: ",")
    }

    /// An id as the content of an entity-tag: bytes outside `etagc` (and `%`) percent-encoded.
    static func etag(_ id: String) -> String {
        var out = ""
        for b in id.utf8 {
            if b < 0x21 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "%") || b >= 0x7F {
                out += "%" + (b < 0x10 ? "0" : "") + String(b, radix: 16, uppercase: true)
            } else {
                out.unicodeScalars.append(Unicode.Scalar(b))
            }
        }
        return out
    }
}

extension String {
    /// Backslashes and quotes escaped for an HTTP quoted-string.
    fileprivate func replacingQuotes() -> String {
        var out = ""
        for c in self {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }
}

/// A stream admitted and about to open: what its request asked for.
struct Opening: Sendable {
    let subscriber: Subscriber
    let request: Request
    let matchers: Matchers
    let grants: Grants?
    let lastEventID: String?
}

extension MercureRoutes {
    /// Places the stream (its replay, then live updates) and opens it; announces its
    /// subscriptions when the hub tracks them. `fetched`: what the broker replayed after an id
    /// this hub had not seen.
    func open(_ o: Opening, _ host: RouteSetHost, fetched: [MercureBus.Update]? = nil) -> TransportReply {
        let placement = bus.subscribe(
            o.subscriber, matchers: o.matchers, grant: o.grants?.subscribe ?? TopicGrant(),
            lastEventID: o.lastEventID, fetched: fetched)
        var headers = host.streamHeaders
        if case .cursor(let cursor) = placement { headers.append((cursorHeader, cursor)) }
        let bus = self.bus
        let cluster = self.cluster
        let subscriptions = settings.subscriptions ? self.subscriptions(o.matchers, o.grants) : []
        for subscription in subscriptions { cluster.announce(subscription, active: true) }
        let subscriber = o.subscriber
        return host.openStream(
            subscriber, o.request, headers: headers, expiresAt: o.grants?.expiresAt,
            onClose: {
                bus.remove(subscriber)
                for subscription in subscriptions { cluster.announce(subscription, active: false) }
            })
    }

    /// A resume from an id this hub does not hold: the answer waits (off libmicrohttpd's
    /// thread) until the hub has caught up with the broker, or the broker has replayed what
    /// follows the id; an id nobody can place is answered `earliest`.
    func resume(_ o: Opening, _ host: RouteSetHost) -> TransportReply {
        guard let id = o.lastEventID else { return open(o, host) }
        let later = DeferredReply()
        let bus = self.bus
        cluster.fetch(after: id, holds: { bus.holds($0) }) { [self] fetched in
            later.complete(with: open(o, host, fetched: fetched))
        }
        return .deferred(later)
    }
}
