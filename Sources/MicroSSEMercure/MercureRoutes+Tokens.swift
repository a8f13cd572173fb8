import MicroSSE
import MicroSSEAuth
import MicroSSECore
import MicroSSETransport
import MicroSSEWire

/// Reading a request's token, and the RFC 6750 challenges.
extension MercureRoutes {
    /// The request's token read into grants: nil without a token, a `400`/`401` answer when
    /// it is malformed or refused. The `Authorization` header wins over the cookie (which is
    /// then ignored: cookies are ambient); draft-07 also reads the query's `authorization`.
    func grants(_ request: Request) -> Checked<Grants?> {
        let token: String
        if let authorization = request.header("Authorization") {
            guard let bearer = TokenSource.bearer(authorization), let usable = TokenSource.usable(bearer) else {
                return .refused(
                    challenge(
                        400, "invalid_request", "the Authorization header must be Bearer and a token"))
            }
            token = usable
        } else if let cookie = Self.cookie(cookieName, request), let usable = TokenSource.usable(Substring(cookie)) {
            token = usable
        } else if settings.legacy, let query = request.queryValue("authorization"),
            let usable = TokenSource.usable(Substring(query))
        {
            token = usable
        } else {
            return .ok(nil)
        }
        let now = Int(Clocks.wallMicroseconds() / 1_000_000)
        do throws(InvalidToken) {
            let grants = try verified.grants(token, now: now, reader: tokens)
            // The verifier allows clock skew; a stream must not open only to end at once.
            if let exp = grants.expiresAt, exp <= now {
                return .refused(challenge(401, "invalid_token", "token expired"))
            }
            return .ok(grants)
        } catch {
            return .refused(challenge(401, "invalid_token", error.reason))
        }
    }

    private static func cookie(_ name: String, _ request: Request) -> String? {
        for header in request.headerValues("Cookie") {
            if let value = TokenSource.cookie(named: name, in: header) { return String(value) }
        }
        return nil
    }

    /// `status` with a one-line reason and the RFC 6750 challenge, which names the metadata
    /// document (RFC 9728 `resource_metadata`) when the hub has one.
    func challenge(_ status: Int, _ error: String?, _ reason: String) -> Response {
        var params: [String] = error.map { ["error=\"\($0)\""] } ?? []
        if !settings.legacy, let url = metadataURL, !url.contains("\""), !url.contains("\\") {
            params.append("resource_metadata=\"\(url)\"")
        }
        var r = Response.text(reason, status: status)
        r.headers.append(("WWW-Authenticate", params.isEmpty ? "Bearer" : "Bearer " + params.joined(separator: ", ")))
        return r
    }
}
