import Logging
import MicroSSEAuth
import MicroSSECore
import MicroSSETransport
import Synchronization

/// Token authorization for the channel routes, when ``ServerConfiguration/jwt`` is set.
///
/// - **Subscribe**: every requested channel that no ``ServerConfiguration/publicChannels``
///   pattern matches must be granted by the token's `microsse.subscribe` list. The token comes
///   from `Authorization: Bearer`, the cookie `microsseAuthorization` or the query parameter
///   `authorization`, the first present winning (``TokenSource``). No usable token, or one the
///   verifier refuses → `401` with the verifier's one-line reason and `WWW-Authenticate: Bearer`;
///   a channel not granted → `403` naming it. A token already past its `exp` is refused even
///   within the verifier's leeway (the stream would end at once); an accepted stream is ended
///   at `exp` by ``StreamExpiry``. A request for public channels only is not checked at all.
/// - **Publish**: the static ``ServerConfiguration/publishToken`` (when set) or a token from
///   `Authorization: Bearer` only — never a cookie or the query, so a cross-site page cannot
///   publish with a visitor's ambient cookie — whose `microsse.publish` list grants the channel.
///   Either suffices.
/// - Custom routes and stream routes are left to the embedder's authorizer, which can read the
///   verified claims (`Server.setAuthorizer(_:)` with a `(Request, Access, Claims?)` closure).
final class JWTAuthority: Sendable {
    let verifier: JWTVerifier
    let publicChannels: [ChannelPattern]
    let staticPublishToken: String?
    let expiry = StreamExpiry()
    let logger: Logger
    /// The last token that verified, with its claims and the second it was verified in: one
    /// subscribe asks for its token's claims up to three times (the guard, the expiry watch, the
    /// embedder's authorizer), and a signature check costs up to about 0.1 ms (ES256).
    private let lastVerified = Mutex<(token: String, second: Int, claims: Claims)?>(nil)

    /// nil unless `configuration.jwt` is set and valid (``Server/start()`` refuses an invalid one).
    init?(_ configuration: ServerConfiguration, logger: Logger) {
        guard let settings = configuration.jwt, let verifier = try? settings.makeVerifier() else { return nil }
        self.verifier = verifier
        self.publicChannels = configuration.publicChannels.compactMap { try? ChannelPattern($0) }
        self.staticPublishToken = configuration.publishToken
        self.logger = logger
    }

    static var now: Int { Int(Clocks.wallMicroseconds() / 1_000_000) }

    /// The token a request carries for `access`: only `Authorization: Bearer` for a publish.
    static func token(_ request: Request, for access: Access) -> String? {
        if case .publish = access { return bearerToken(request) }
        let cookies = request.headerValues("Cookie")
        return TokenSource.find(
            authorization: request.header("Authorization"),
            cookieHeader: cookies.isEmpty ? nil : cookies.joined(separator: "; "), query: request.query)?.token
    }

    /// The claims of the request's token if it verifies now, else nil.
    func claims(for request: Request, _ access: Access) -> Claims? {
        guard let token = Self.token(request, for: access) else { return nil }
        return try? verify(token, now: Self.now)
    }

    /// `verifier.verify`, answered from ``lastVerified`` for the same token in the same second
    /// (the verdict cannot differ: it depends on the token and the time in whole seconds). The
    /// token is compared in constant time: the one remembered may be another client's.
    func verify(_ token: String, now: Int) throws(AuthError) -> Claims {
        if let last = lastVerified.withLock({ $0 }), last.second == now, constantTimeEquals(last.token, token) {
            return last.claims
        }
        let claims = try verifier.verify(token, now: now)
        lastVerified.withLock { $0 = (token, now, claims) }
        return claims
    }

    /// The channels of `channels` no public pattern matches.
    func privateChannels(_ channels: [String]) -> [String] {
        channels.filter { c in !publicChannels.contains { $0.matches(c) } }
    }

    /// Ends `client`'s stream when its token expires (nothing for public channels or a token
    /// without `exp`).
    func watch(_ client: Client, request: Request, channels: [String]) {
        guard !privateChannels(channels).isEmpty,
            let exp = claims(for: request, .subscribe(channels: channels))?.expiresAt
        else { return }
        expiry.watch(client, exp: exp)
    }

    private func refuse(_ request: Request, _ status: Int, _ reason: String) -> Response {
        logger.debug("refused \(request.method) \(request.path) from \(request.remoteAddress): \(status) \(reason)")
        var r = Response.text(reason, status: status)
        if status == 401 { r.headers.append(("WWW-Authenticate", "Bearer")) }
        return r
    }
}

/// The ``RequestGuard`` face of ``JWTAuthority``: registered in ``Router`` after the site guard.
struct JWTGuard: RequestGuard {
    let authority: JWTAuthority

    func check(_ request: Request, _ access: Access) -> Response? {
        authority.check(request, access)
    }
}

extension JWTAuthority {
    func check(_ request: Request, _ access: Access) -> Response? {
        switch access {
        case .subscribe(let channels):
            let needed = privateChannels(channels)
            guard let first = needed.first else { return nil }
            guard let token = Self.token(request, for: access) else {
                return refuse(
                    request, 401,
                    "channel \(first) needs a token (Authorization: Bearer, cookie \(TokenSource.cookieName) or query \(TokenSource.queryName))"
                )
            }
            let now = Self.now
            let claims: Claims
            do throws(AuthError) {
                claims = try verify(token, now: now)
            } catch {
                return refuse(request, 401, error.reason)
            }
            if let exp = claims.expiresAt, exp <= now { return refuse(request, 401, "token expired") }
            if let denied = needed.first(where: { !claims.canSubscribe($0) }) {
                return refuse(request, 403, "token does not grant subscribing to channel \(denied)")
            }
            return nil
        case .publish(let channel):
            if let staticPublishToken, let given = bearerToken(request), constantTimeEquals(given, staticPublishToken) {
                return nil
            }
            guard let token = Self.token(request, for: access) else {
                return refuse(request, 401, "publishing needs Authorization: Bearer <token>")
            }
            let claims: Claims
            do throws(AuthError) {
                claims = try verify(token, now: Self.now)
            } catch {
                let isJWT = token.contains(".")
                return refuse(request, 401, isJWT || staticPublishToken == nil ? error.reason : "publish token invalid")
            }
            guard claims.canPublish(channel) else {
                return refuse(request, 403, "token does not grant publishing to channel \(channel)")
            }
            return nil
        case .stream, .route:
            return nil
        }
    }
}

/// `message` with the value of every `authorization` query parameter in it replaced by
/// `REDACTED` (``TokenSource/redactedQuery(_:)`` on every space-separated word holding a `?`),
/// for log lines that may quote a request target.
func redactingTokens(_ message: String) -> String {
    guard message.contains("?") else { return message }
    return message.split(separator: " ", omittingEmptySubsequences: false).map { word in
        word.contains("?") ? TokenSource.redactedQuery(String(word)) : String(word)
    }.joined(separator: " ")
}
