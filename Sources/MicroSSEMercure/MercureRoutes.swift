import MicroSSE
import MicroSSEAuth
import MicroSSECore
import MicroSSETransport
import MicroSSEWire

/// `/.well-known/mercure`: `POST` publishes an update, `GET` subscribes (docs/MERCURE.md).
final class MercureRoutes: RouteSet {
    let settings: MercureSettings
    let tokens: TokenReader
    let verified = VerifiedTokens()
    let bus: MercureBus
    /// The most matchers one subscribe may carry (``ServerConfiguration/maxChannelsPerStream``).
    let maxMatchers: Int
    /// The hub's URL, which relative URL patterns and topics are read against.
    let base: URLParts

    init(settings: MercureSettings, configuration: ServerConfiguration, verifier: JWTVerifier) {
        self.settings = settings
        self.tokens = TokenReader(verifier: verifier, settings: settings)
        self.base = HubURL.base(settings.audience)
        self.bus = MercureBus(
            historyCount: configuration.historyCount, historyBytes: configuration.historyBytes, base: base)
        self.cluster = MercureCluster(bus: bus, legacy: settings.legacy)
        self.maxMatchers = configuration.maxChannelsPerStream
        self.maxPublishBytes = configuration.maxPublishBytes
        var paths = settings.legacy ? [MercureText.hubPath] : [MercureText.hubPath, Self.metadataPath]
        if settings.subscriptions { paths.append(Subscription.basePath) }
        self.paths = paths
        self.pathPrefixes = settings.subscriptions ? [Subscription.basePath] : []
    }

    let paths: [String]
    let pathPrefixes: [String]
    /// Where updates go: the bus at once, or every hub through the broker.
    let cluster: MercureCluster
    let maxPublishBytes: Int

    func start(_ host: RouteSetHost) throws(MicroSSEError) {
        cluster.start(host, log: { [host] in host.warn($0) })
    }

    func stop() { cluster.stop() }

    /// Where draft-08's protected resource metadata (RFC 9728) is served: the well-known prefix
    /// before the hub's path.
    static let metadataPath = "/.well-known/oauth-protected-resource" + MercureText.hubPath

    /// The metadata document's URL: the audience's origin and ``metadataPath`` (nil without an
    /// absolute `http(s)` audience).
    var metadataURL: String? {
        guard let audience = settings.audience else { return nil }
        for scheme in ["https://", "http://"] where audience.hasPrefix(scheme) {
            let rest = audience.dropFirst(scheme.count)
            let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
            guard !authority.isEmpty else { return nil }
            return scheme + authority + Self.metadataPath
        }
        return nil
    }

    /// The cursor response header: draft-08's, or draft-07's `Last-Event-ID`.
    var cursorHeader: String { settings.legacy ? "Last-Event-ID" : "Mercure-Last-Event-ID" }

    var exposedHeaders: [String] {
        settings.subscriptions && !settings.legacy ? [cursorHeader, "Link"] : [cursorHeader]
    }

    /// The cookie a browser's token comes in.
    var cookieName: String { settings.legacy ? "mercureAuthorization" : "__Secure-mercure_access_token" }

    func admit(_ head: Request, _ host: RouteSetHost) -> Response? {
        guard head.path == MercureText.hubPath else { return nil }  // the others answer 405
        if let refusal = host.authorize(head, .route(path: head.path), publishing: true) { return refusal }
        switch grants(head) {
        case .refused(let refusal): return refusal
        case .ok(nil): return challenge(401, nil, "publishing needs a token (Authorization: Bearer)")
        case .ok(let grants?):
            return grants.publish.isEmpty
                ? challenge(403, "insufficient_scope", "the token grants no publishing") : nil
        }
    }

    func handle(_ request: Request, _ host: RouteSetHost) -> TransportReply {
        if request.path == Self.metadataPath {
            guard request.method == "GET" || request.method == "HEAD" else {
                var r = Response.text("method not allowed", status: 405)
                r.headers.append(("Allow", "GET"))
                return .response(r)
            }
            if let refusal = host.authorize(request, .route(path: request.path), publishing: false) {
                return .response(refusal)
            }
            return .response(.json(metadata))
        }
        if request.path.hasPrefix(Subscription.basePath) { return .response(subscriptionsAPI(request, host)) }
        switch request.method {
        case "GET", "HEAD": return subscribe(request, host)
        case "POST": return publish(request, host)
        default:
            var r = Response.text("method not allowed", status: 405)
            r.headers.append(("Allow", "GET, POST"))
            return .response(r)
        }
    }

    /// The protected resource metadata (RFC 9728) of a draft-08 hub.
    var metadata: String {
        JSON.object([
            ("resource", JSON.quote(settings.audience ?? "")),
            ("authorization_details_types_supported", "[" + JSON.quote(TokenReader.detailType) + "]"),
            ("bearer_methods_supported", "[\"header\"]"),
            ("mercure_cookie", JSON.quote(cookieName)),
            ("mercure_matcher_types_supported", "[\"exact\",\"urlpattern\"]"),
            ("mercure_subscriptions", settings.subscriptions ? "true" : "false"),
        ])
    }

    // MARK: Publish

    private func publish(_ request: Request, _ host: RouteSetHost) -> TransportReply {
        switch checkPublish(request, host) {
        case .refused(let refusal): return .response(refusal)
        case .ok(let update): return send(update, host)
        }
    }

    /// The update a publish request carries, or the answer refusing it.
    private func checkPublish(_ request: Request, _ host: RouteSetHost) -> Checked<MercureUpdate> {
        if let refusal = host.authorize(request, .route(path: request.path), publishing: true) {
            return .refused(refusal)
        }
        let grants: Grants
        switch self.grants(request) {
        case .refused(let refusal): return .refused(refusal)
        case .ok(nil): return .refused(challenge(401, nil, "publishing needs a token (Authorization: Bearer)"))
        case .ok(let g?): grants = g
        }
        guard MercureText.isForm(request.header("Content-Type") ?? "") else {
            return .refused(.text("publish with Content-Type: application/x-www-form-urlencoded", status: 415))
        }
        guard let form = MercureText.parseForm(request.body) else {
            return .refused(.text("the form's names and values must be UTF-8 once decoded", status: 400))
        }
        var topics: [String] = []
        var data: String?
        var isPrivate = false
        var id: String?
        var type: String?
        var retry: String?
        for (name, value) in form {
            switch name {
            case "topic":
                guard topics.count < MercureSettings.maxTopicsPerUpdate else {
                    return .refused(
                        .text("an update may have at most \(MercureSettings.maxTopicsPerUpdate) topics", status: 413))
                }
                topics.append(value)
            case "data": data = data ?? value
            case "private": isPrivate = true
            case "id": id = id ?? value
            case "type": type = type ?? value
            case "retry": retry = retry ?? value
            default: continue  // unknown fields are ignored (future extensions)
            }
        }
        guard !topics.isEmpty else { return .refused(.text("an update needs at least one topic", status: 400)) }
        for topic in topics {
            guard topic.utf8.count <= MercureSettings.maxTopicLength else {
                return .refused(.text("a topic is longer than \(MercureSettings.maxTopicLength) bytes", status: 413))
            }
            if let reason = MercureText.invalidCharacter(topic, "a topic") {
                return .refused(.text(reason, status: 400))
            }
            guard !topic.utf8.elementsEqual("*".utf8) else {
                return .refused(.text("the topic * is reserved for the wildcard", status: 400))
            }
            guard !MercureText.isReserved(topic) else {
                return .refused(
                    .text("topic \(topic.debugDescription) is in the hub's reserved namespace", status: 400))
            }
        }
        if let id {
            guard id.utf8.count <= MercureSettings.maxTopicLength else {
                return .refused(.text("the id is longer than \(MercureSettings.maxTopicLength) bytes", status: 413))
            }
            guard !id.isEmpty else {
                return .refused(.text("the id must not be empty (leave it out to have one)", status: 400))
            }
            guard !id.hasPrefix("#") else { return .refused(.text("the id must not start with #", status: 400)) }
            guard !id.utf8.elementsEqual(MercureBus.earliest.utf8) else {
                return .refused(.text("the id earliest is reserved", status: 400))
            }
            if let reason = MercureText.invalidCharacter(id, "the id") { return .refused(.text(reason, status: 400)) }
        }
        if let type {
            if let reason = MercureText.invalidCharacter(type, "the type") {
                return .refused(.text(reason, status: 400))
            }
            guard !type.utf8.elementsEqual("mercure".utf8) else {
                return .refused(.text("the type mercure is reserved for the hub", status: 400))
            }
            if let reason = ControlEvents.reservedReason(type) { return .refused(.text(reason, status: 400)) }
        }
        var retryMilliseconds: Int?
        if let retry {
            guard !retry.isEmpty, retry.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let ms = Int(retry) else {
                return .refused(.text("retry must be a number of milliseconds (ASCII digits)", status: 400))
            }
            retryMilliseconds = ms
        }
        let keys = topics.map(Topic.init)
        guard keys.allSatisfy({ grants.publish.matches($0) }) else {
            return .refused(challenge(403, "insufficient_scope", "the token does not grant publishing to every topic"))
        }
        let update = MercureUpdate(
            id: id ?? MercureText.newID(), topics: topics, isPrivate: isPrivate, type: type, retry: retryMilliseconds,
            data: data ?? "")
        return .ok(update)
    }

    // MARK: Subscribe

    private func subscribe(_ request: Request, _ host: RouteSetHost) -> TransportReply {
        if let refusal = host.authorize(request, .stream(path: request.path), publishing: false) {
            return .response(refusal)
        }
        let matchers: Matchers
        switch parseMatchers(request) {
        case .refused(let refusal): return .response(refusal)
        case .ok(let m): matchers = m
        }
        let grants: Grants?
        switch self.grants(request) {
        case .refused(let refusal): return .response(refusal)
        case .ok(let g): grants = g
        }
        // `Last-Event-ID` wins over the query parameter; either present, even empty, asks for
        // the cursor header.
        let header = request.header("Last-Event-ID")
        let names = settings.legacy ? ["lastEventID", "Last-Event-ID"] : ["last_event_id"]
        let query = names.lazy.compactMap { request.queryValue($0) }.first
        let asked = header != nil || query != nil
        let lastEventID = header.flatMap { $0.isEmpty ? nil : $0 } ?? query ?? ""
        if request.method == "HEAD" { return .response(Response(status: 200, headers: host.streamHeaders)) }
        guard let subscriber = host.admitSubscriber() else { return host.full }
        let opening = Opening(
            subscriber: subscriber, request: request, matchers: matchers, grants: grants,
            lastEventID: asked ? lastEventID : nil)
        if let id = opening.lastEventID, cluster.isClustered, !id.utf8.elementsEqual(MercureBus.earliest.utf8),
            !bus.holds(id)
        {
            // Another hub's id this hub has not seen yet, or from before it joined: placed by
            // the broker (clustered resume, MercureRoutes+Subscriptions.swift).
            return resume(opening, host)
        }
        return open(opening, host)
    }

    /// The stream's matchers: draft-08's `match` / `match_exact` (and `*`), draft-07's `topic`.
    private func parseMatchers(_ request: Request) -> Checked<Matchers> {
        var matchers = Matchers()
        var count = 0
        for (name, value) in request.query {
            if settings.legacy {
                guard name == "topic" else { continue }
            } else {
                guard name.lowercased().hasPrefix("match") else { continue }
                guard name == "match" || name == "match_exact" || name == "match_urlpattern" else {
                    return .refused(.text("unknown matcher parameter \(name.debugDescription)", status: 400))
                }
            }
            count += 1
            guard count <= maxMatchers else {
                return .refused(.text("at most \(maxMatchers) matchers per subscription request", status: 400))
            }
            guard value.utf8.count <= MercureSettings.maxTopicLength else {
                return .refused(.text("a matcher is longer than \(MercureSettings.maxTopicLength) bytes", status: 400))
            }
            if let reason = MercureText.invalidCharacter(value, "a matcher") {
                return .refused(.text(reason, status: 400))
            }
            if value.utf8.elementsEqual("*".utf8) {
                matchers.all = true  // the wildcard, whatever the matcher type
            } else if name == "match_urlpattern" && !settings.legacy {
                do throws(URLPatternError) {
                    matchers.patterns.insert(try URLPattern(value, base: base))
                } catch {
                    return .refused(.text("URL pattern \(value.debugDescription): \(error.reason)", status: 400))
                }
            } else if settings.legacy && URITemplate.isTemplate(value) {
                do throws(TemplateError) {
                    matchers.templates.insert(try URITemplate(value))
                } catch {
                    return .refused(.text("URI template \(value.debugDescription): \(error.reason)", status: 400))
                }
            } else {
                matchers.exact.insert(Topic(value))
            }
        }
        guard count > 0 else {
            let hint =
                settings.legacy
                ? "subscribe with at least one topic= parameter (draft-07)"
                : "subscribe with at least one match= parameter (draft-08; topic= is draft-07's: --mercure-legacy)"
            return .refused(.text(hint, status: 400))
        }
        return .ok(matchers)
    }
}

/// A value read from a request, or the answer refusing it.
enum Checked<Value> {
    case ok(Value)
    case refused(Response)
}
