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

/// The token of an `Authorization: Bearer TOKEN` header, if any. A value with a control byte
/// (a NUL, say, after which C code would stop reading) holds no token.
func bearerToken(_ request: Request) -> String? {
    guard let value = request.header("Authorization"), value.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7F })
    else { return nil }
    let parts = value.split(separator: " ", maxSplits: 1)
    guard parts.count == 2, asciiCaseInsensitiveEquals(String(parts[0]), "Bearer") else { return nil }
    return String(parts[1])
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
