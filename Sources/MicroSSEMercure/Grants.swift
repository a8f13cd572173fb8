import MicroSSEAuth
import MicroSSEWire

/// The topics one action of a token covers: every topic (`*`), or a set of exact topics.
struct TopicGrant: Sendable, Hashable {
    var all = false
    var exact: Set<Topic> = []
    /// Draft-07 URI template selectors.
    var templates: [URITemplate] = []
    /// Draft-08 `urlpattern` matchers.
    var patterns: [URLPattern] = []

    var isEmpty: Bool { !all && exact.isEmpty && templates.isEmpty && patterns.isEmpty }

    func matches(_ topic: Topic) -> Bool {
        all || exact.contains(topic) || templates.contains { $0.matches(topic) }
            || patterns.contains { $0.matches(topic) }
    }

    func matchesAny(_ topics: [Topic]) -> Bool {
        all || topics.contains { matches($0) }
    }
}

/// What a verified Mercure token grants, and until when.
struct Grants: Sendable, Equatable {
    var publish = TopicGrant()
    var subscribe = TopicGrant()
    /// `exp`, seconds since the epoch (draft-08 tokens always have it).
    var expiresAt: Int?
    /// The payloads of the token's subscriptions, as JSON text, in the token's order: the first
    /// whose topics match a subscription's matcher string is that subscription's (draft-08's
    /// `subscribe` details; draft-07's `mercure.payload`, one rule for every topic).
    var payloads: [PayloadRule] = []

    /// The payload of the subscription made by `matcher`, or nil.
    func payload(for matcher: String) -> String? {
        let topic = Topic(matcher)
        return payloads.first { $0.topics.matches(topic) }?.json
    }

    /// Anonymous: nothing.
    static let none = Grants()
}

/// A payload (as JSON text) and the subscriptions it is for.
struct PayloadRule: Sendable, Equatable {
    let topics: TopicGrant
    let json: String
}

/// Why a token is refused: `401` with `error="invalid_token"`.
struct InvalidToken: Error {
    let reason: String
}

/// Reads the grants of a token, checked as the configured revision requires.
struct TokenReader: Sendable {
    let verifier: JWTVerifier
    let settings: MercureSettings

    /// The Mercure authorization detail type (RFC 9396 `type`).
    static let detailType = "https://mercure.rocks/authorization-detail"

    func grants(_ token: String, now: Int) throws(InvalidToken) -> Grants {
        let verified: (claims: Claims, payload: JSONValue)
        do throws(AuthError) {
            verified = try verifier.verify(token, now: now, profile: settings.legacy ? .jwt : .accessToken)
        } catch {
            throw InvalidToken(reason: error.reason)
        }
        if settings.legacy {
            var grants = try Self.legacyGrants(verified.payload)
            grants.expiresAt = verified.claims.expiresAt
            return grants
        }
        guard let exp = verified.claims.expiresAt else { throw InvalidToken(reason: "token has no exp") }
        try checkIssuerAndAudience(verified.payload)
        var grants = try Self.details(verified.payload, base: HubURL.base(settings.audience))
        grants.expiresAt = exp
        return grants
    }

    /// `iss` is one of the trusted issuers; `aud` is the hub's resource identifier or an array
    /// holding it (RFC 9068 §4).
    private func checkIssuerAndAudience(_ payload: JSONValue) throws(InvalidToken) {
        guard case .string(let iss)? = payload["iss"] else { throw InvalidToken(reason: "token has no iss") }
        guard settings.issuers.contains(where: { $0.utf8.elementsEqual(iss.utf8) }) else {
            throw InvalidToken(reason: "token issuer is not trusted")
        }
        guard let audience = settings.audience else { throw InvalidToken(reason: "the hub has no audience") }
        switch payload["aud"] {
        case .string(let aud)? where aud.utf8.elementsEqual(audience.utf8):
            return
        case .array(let list)? where list.contains(.string(audience)):
            return
        case nil:
            throw InvalidToken(reason: "token has no aud")
        default:
            throw InvalidToken(reason: "token audience is not this hub")
        }
    }

    /// Draft-08: the Mercure entries of `authorization_details` (other types are ignored; an
    /// entry of the Mercure type that does not validate refuses the whole token).
    static func details(_ payload: JSONValue, base: URLParts) throws(InvalidToken) -> Grants {
        var grants = Grants()
        guard let details = payload["authorization_details"] else { return grants }
        guard case .array(let entries) = details else {
            throw InvalidToken(reason: "token claim authorization_details is not an array")
        }
        var mercureEntries = 0
        for entry in entries {
            guard case .object = entry else {
                throw InvalidToken(reason: "token claim authorization_details holds a non-object")
            }
            guard case .string(let type)? = entry["type"] else {
                throw InvalidToken(reason: "an authorization detail has no type")
            }
            guard type.utf8.elementsEqual(detailType.utf8) else { continue }
            mercureEntries += 1
            guard mercureEntries <= MercureSettings.maxGrantEntries else {
                throw InvalidToken(reason: "token has more than \(MercureSettings.maxGrantEntries) Mercure details")
            }
            guard case .array(let actions)? = entry["actions"], !actions.isEmpty else {
                throw InvalidToken(reason: "a Mercure authorization detail has no actions")
            }
            var publish = false
            var subscribe = false
            for action in actions {
                guard case .string(let name) = action else {
                    throw InvalidToken(reason: "a Mercure authorization detail holds a non-string action")
                }
                if name == "publish" { publish = true }
                if name == "subscribe" { subscribe = true }  // others grant nothing
            }
            guard case .array(let topics)? = entry["topics"], !topics.isEmpty else {
                throw InvalidToken(reason: "a Mercure authorization detail has no topics")
            }
            guard topics.count <= MercureSettings.maxGrantEntries else {
                throw InvalidToken(
                    reason: "a Mercure authorization detail has more than \(MercureSettings.maxGrantEntries) topics")
            }
            var grant = TopicGrant()
            for matcher in topics {
                guard case .object = matcher, case .string(let match)? = matcher["match"] else {
                    throw InvalidToken(reason: "a topic matcher is not an object with a string match")
                }
                guard match.utf8.count <= MercureSettings.maxTopicLength else {
                    throw InvalidToken(reason: "a topic matcher is longer than \(MercureSettings.maxTopicLength) bytes")
                }
                let type: String
                switch matcher["match_type"] {
                case nil: type = "exact"
                case .string(let t)?: type = t
                default: throw InvalidToken(reason: "a topic matcher's match_type is not a string")
                }
                if match.utf8.elementsEqual("*".utf8) {
                    grant.all = true
                } else if type == "exact" {
                    grant.exact.insert(Topic(match))
                } else if type == "urlpattern" {
                    do throws(URLPatternError) {
                        grant.patterns.append(try URLPattern(match, base: base))
                    } catch {
                        throw InvalidToken(reason: "a urlpattern topic matcher: \(error.reason)")
                    }
                } else {
                    // A grant this hub cannot evaluate: the token is refused rather than read
                    // as granting less.
                    throw InvalidToken(reason: "match_type \(type.debugDescription) is not supported by this hub")
                }
            }
            if publish { grants.publish.merge(grant) }
            if subscribe { grants.subscribe.merge(grant) }
            if subscribe, let payload = entry["payload"] {
                grants.payloads.append(PayloadRule(topics: grant, json: payload.jsonText))
            }
        }
        return grants
    }

    /// Draft-07: the `mercure` claim's `publish` and `subscribe` selector lists. `*` is every
    /// topic, a selector holding `{` an RFC 6570 URI template (one ``URITemplate`` does not
    /// serve grants nothing), anything else an exact topic.
    static func legacyGrants(_ payload: JSONValue) throws(InvalidToken) -> Grants {
        var grants = Grants()
        guard let claim = payload["mercure"] else { return grants }
        guard case .object = claim else { throw InvalidToken(reason: "token claim mercure is not an object") }
        func selectors(_ name: String) throws(InvalidToken) -> TopicGrant {
            var grant = TopicGrant()
            guard let list = claim[name] else { return grant }
            guard case .array(let items) = list else {
                throw InvalidToken(reason: "token claim mercure.\(name) is not an array")
            }
            guard items.count <= MercureSettings.maxGrantEntries else {
                throw InvalidToken(
                    reason: "token claim mercure.\(name) has more than \(MercureSettings.maxGrantEntries) selectors")
            }
            for item in items {
                guard case .string(let selector) = item, selector.utf8.count <= MercureSettings.maxTopicLength else {
                    throw InvalidToken(reason: "token claim mercure.\(name) holds a non-string or too long selector")
                }
                if selector.utf8.elementsEqual("*".utf8) {
                    grant.all = true
                } else if !URITemplate.isTemplate(selector) {
                    grant.exact.insert(Topic(selector))
                } else if let template = try? URITemplate(selector) {
                    grant.templates.append(template)
                }  // a template this hub does not serve grants nothing
            }
            return grant
        }
        grants.publish = try selectors("publish")
        grants.subscribe = try selectors("subscribe")
        if let payload = claim["payload"] {
            grants.payloads = [PayloadRule(topics: TopicGrant(all: true), json: payload.jsonText)]
        }
        return grants
    }
}

extension TopicGrant {
    mutating func merge(_ other: TopicGrant) {
        all = all || other.all
        exact.formUnion(other.exact)
        templates += other.templates
        patterns += other.patterns
    }
}

extension JSONValue {
    /// The value as compact JSON text (numbers as written).
    var jsonText: String {
        switch self {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .number(let text): text
        case .string(let s): JSON.quote(s)
        case .array(let items): "[" + items.map(\.jsonText).joined(separator: ",") + "]"
        case .object(let members):
            "{" + members.map { JSON.quote($0.0) + ":" + $0.1.jsonText }.joined(separator: ",") + "}"
        }
    }
}
