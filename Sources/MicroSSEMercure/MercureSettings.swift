import MicroSSE
import MicroSSEAuth
import MicroSSECore

/// The Mercure hub at `/.well-known/mercure` (draft-dunglas-mercure-08, or draft-07 with
/// ``legacy``): `import MicroSSEMercure` and set ``MicroSSE/ServerConfiguration/mercure``.
///
/// Tokens are verified with ``MicroSSE/ServerConfiguration/jwt``'s key, which Mercure needs:
/// publishers must present a token.
public struct MercureSettings: Sendable, Equatable {
    /// Whether the hub serves `/.well-known/mercure`. Default off.
    public var enabled = false
    /// Speak draft-07 where the two revisions differ: `topic=` selectors, the `mercure` claim
    /// in tokens without `typ`, `iss` or `aud`, the cookie `mercureAuthorization` and the query
    /// parameter `authorization`, `lastEventID`, the `Last-Event-ID` response header. Default off
    /// (draft-08).
    public var legacy = false
    /// The active subscriptions feature: subscription events (private updates when a stream
    /// subscribes and when it goes) and the subscriptions API at
    /// `/.well-known/mercure/subscriptions`, across every hub of a Redis cluster. Default off.
    public var subscriptions = false
    /// The trusted issuers (`iss`) of draft-08 tokens, compared byte for byte; draft-08 needs at
    /// least one. Default none.
    public var issuers: [String] = []
    /// The hub's resource identifier, which draft-08 tokens must name in `aud` (for example
    /// `https://hub.example.com/.well-known/mercure`); draft-08 needs it. Default none.
    public var audience: String?

    /// The longest topic (and matcher, and publisher-given id) accepted, in bytes.
    public static let maxTopicLength = 2_048
    /// The most `topic` fields one update may carry.
    public static let maxTopicsPerUpdate = 32
    /// The most Mercure authorization details, and topic matchers in each, a token may carry
    /// (and the most selectors in each list of a draft-07 `mercure` claim).
    public static let maxGrantEntries = 64

    /// Settings with everything off.
    public init() {}

    /// Settings serving the hub.
    public init(
        enabled: Bool = true, legacy: Bool = false, subscriptions: Bool = false, issuers: [String] = [],
        audience: String? = nil
    ) {
        self.enabled = enabled
        self.legacy = legacy
        self.subscriptions = subscriptions
        self.issuers = issuers
        self.audience = audience
    }

    /// Checks the settings against the rest of `configuration`; throws `.invalidArgument`
    /// naming the first problem.
    public func validate(_ configuration: ServerConfiguration) throws(MicroSSEError) {
        guard enabled else { return }
        guard configuration.jwt != nil else {
            throw MicroSSEError(
                .invalidArgument, "mercure needs jwt: publishers must present a token (--jwt-secret or --jwt-key)")
        }
        for issuer in issuers {
            guard !issuer.isEmpty, issuer.utf8.count <= Self.maxTopicLength else {
                throw MicroSSEError(
                    .invalidArgument, "mercure.issuers must hold non-empty identifiers of at most 2048 bytes")
            }
        }
        if let audience {
            guard !audience.isEmpty, audience.utf8.count <= Self.maxTopicLength else {
                throw MicroSSEError(.invalidArgument, "mercure.audience must be 1 to 2048 bytes")
            }
            // It goes into the WWW-Authenticate header's resource_metadata parameter.
            guard MercureText.invalidCharacter(audience, "") == nil,
                !audience.contains(where: { $0 == " " || $0 == "\"" || $0 == "\\" })
            else {
                throw MicroSSEError(
                    .invalidArgument, "mercure.audience must not hold spaces, quotes, backslashes or control characters"
                )
            }
        }
        guard !legacy else { return }
        guard !issuers.isEmpty else {
            throw MicroSSEError(
                .invalidArgument,
                "mercure (draft-08) needs at least one trusted issuer (--mercure-issuer), or --mercure-legacy")
        }
        guard audience != nil else {
            throw MicroSSEError(
                .invalidArgument,
                "mercure (draft-08) needs the hub's resource identifier (--mercure-audience), or --mercure-legacy")
        }
    }
}

extension MercureSettings: RouteSetFactory {
    package func makeRouteSet(_ configuration: ServerConfiguration) -> (any RouteSet)? {
        guard enabled, let jwt = configuration.jwt else { return nil }
        let verifier: JWTVerifier
        do throws(AuthError) {
            switch jwt.key {
            case .secret(let secret): verifier = try JWTVerifier(secret: secret)
            case .publicKeyPEM(let pem): verifier = try JWTVerifier(publicKeyPEM: pem)
            }
        } catch {
            return nil  // validate() refused it already
        }
        return MercureRoutes(settings: self, configuration: configuration, verifier: verifier)
    }
}

extension ServerConfiguration {
    /// The Mercure hub at `/.well-known/mercure`. Default: off.
    public var mercure: MercureSettings {
        get { routeSetFactory as? MercureSettings ?? MercureSettings() }
        set { routeSetFactory = newValue }
    }
}
