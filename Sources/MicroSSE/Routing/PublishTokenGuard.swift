import MicroSSEAuth
import MicroSSETransport

/// Publishing needs `Authorization: Bearer <token>` when a publish token is configured.
struct PublishTokenGuard: RequestGuard {
    let token: String

    func check(_ request: Request, _ access: Access) -> Response? {
        guard case .publish = access else { return nil }
        if let given = bearerToken(request), constantTimeEquals(given, token) { return nil }
        var r = Response.text("publishing needs Authorization: Bearer <token>", status: 401)
        r.headers.append(("WWW-Authenticate", "Bearer"))
        return r
    }
}

/// The token of an `Authorization: Bearer TOKEN` header, if any, parsed as the JWT guard parses
/// it (``TokenSource``): one reading of the header for both kinds of token. A token with a space
/// or a control byte (a NUL, say, after which C code would stop reading) is no token.
func bearerToken(_ request: Request) -> String? {
    TokenSource.find(authorization: request.header("Authorization"), cookieHeader: nil, query: [])?.token
}

/// Compares secrets in time that depends only on their lengths, not on where they differ.
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    var diff = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<max(x.count, y.count) {
        diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return diff == 0
}
