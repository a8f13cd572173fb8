// Fuzz target: JWT verification, channel patterns and token extraction (Sources/MicroSSEAuth,
// compiled in with libjwt). Nothing may crash, and:
// - a raw input string is never accepted as a token (it carries no valid signature), and every
//   refusal is one line that does not echo the token;
// - a token libjwt minted (HS256) from fuzzed claims is never refused for its signature or its
//   algorithm, and the claims it grants are valid patterns;
// - ChannelPattern accepts exactly `*`, or 1–128 channel characters optionally followed by `*`,
//   and matches as an independent oracle says;
// - TokenSource.find returns only 1–8192 bytes of visible ASCII, and redactedQuery keeps the
//   number of query parameters.
// The first input byte selects the mode; fields are separated by 0xFF.

import Glibc
internal import CJWT

let fuzzSecret = Array("fuzz-secret-fuzz-secret-fuzz-sec".utf8)
let hsVerifier = try! JWTVerifier(secret: fuzzSecret)
let esVerifier = try! JWTVerifier(
    publicKeyPEM: """
        -----BEGIN PUBLIC KEY-----
        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElbeKzzEqYJMO02PtHgGgCFimLRT0
        oTAMasKsDH7iwpTtkjp9aKZq+rscFL+eyl243NDhQeTl3CvyS7+X6I0VRA==
        -----END PUBLIC KEY-----
        """)
let fuzzNow = 1_700_000_000

func checkReason(_ e: AuthError, token: String) {
    guard !e.reason.isEmpty, e.reason.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else {
        fuzzFail("reason is not one printable line: \(e.reason)")
    }
    if token.utf8.count >= 12, e.reason.contains(token) { fuzzFail("reason echoes the token") }
}

func isChannelChar(_ c: UInt8) -> Bool {
    Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-".utf8).contains(c)
}

func fuzzRawToken(_ bytes: [UInt8]) {
    let token = String(decoding: bytes, as: UTF8.self)
    for v in [hsVerifier, esVerifier] {
        do {
            let claims = try v.verify(token, now: fuzzNow)
            fuzzFail("unsigned input accepted: \(claims)")
        } catch {
            checkReason(error, token: token)
        }
    }
}

func fuzzMintedClaims(_ bytes: [UInt8]) {
    var jwt: OpaquePointer?
    guard jwt_new(&jwt) == 0 else { fuzzFail("jwt_new") }
    defer { jwt_free(jwt) }
    _ = fuzzSecret.withUnsafeBufferPointer { jwt_set_alg(jwt, JWT_ALG_HS256, $0.baseAddress, Int32($0.count)) }
    let json = bytes.filter { $0 != 0 } + [0]
    let added = json.withUnsafeBufferPointer {
        $0.withMemoryRebound(to: CChar.self) { jwt_add_grants_json(jwt, $0.baseAddress) }
    }
    guard added == 0, let s = jwt_encode_str(jwt) else { return }
    let token = String(cString: s)
    free(s)
    do {
        let claims = try hsVerifier.verify(token, now: fuzzNow)
        for p in claims.subscribe + claims.publish {
            guard (try? ChannelPattern(p.description)) == p else { fuzzFail("granted pattern does not round-trip") }
        }
    } catch {
        checkReason(error, token: token)
        if error.code == .signatureInvalid || error.code == .algorithmRefused {
            fuzzFail("libjwt-minted token refused: \(error.reason)")
        }
    }
}

func fuzzPattern(_ parts: [[UInt8]]) {
    let text = String(decoding: parts[0], as: UTF8.self)
    let b = Array(text.utf8)
    let body = b.last == UInt8(ascii: "*") ? Array(b.dropLast()) : b
    let expected = b == [UInt8(ascii: "*")] || ((1...128).contains(body.count) && body.allSatisfy(isChannelChar))
    guard let pattern = try? ChannelPattern(text) else {
        if expected { fuzzFail("valid pattern refused: \(b)") }
        return
    }
    if !expected { fuzzFail("invalid pattern accepted: \(b)") }
    for raw in parts.dropFirst() {
        let channel = String(decoding: raw, as: UTF8.self)
        let c = Array(channel.utf8)
        // `matches` takes valid channel names only (the hub passes nothing else).
        guard (1...128).contains(c.count) && c.allSatisfy(isChannelChar) else { continue }
        let oracle: Bool
        if b == [UInt8(ascii: "*")] {
            oracle = true
        } else if b.last == UInt8(ascii: "*") {
            oracle = c.starts(with: body)
        } else {
            oracle = c == b
        }
        if pattern.matches(channel) != oracle { fuzzFail("\(b) vs \(c): matches \(!oracle)") }
        let claims = Claims(subscribe: [pattern])
        if claims.canSubscribe(channel) != oracle || claims.canPublish(channel) { fuzzFail("claims disagree") }
    }
}

func fuzzSources(_ parts: [[UInt8]]) {
    let s = parts.map { String(decoding: $0, as: UTF8.self) }
    let query = [(name: s[2], value: s[3]), (name: "authorization", value: s[4])]
    if let found = TokenSource.find(authorization: s[0], cookieHeader: s[1], query: query) {
        let t = Array(found.token.utf8)
        guard (1...JWTVerifier.maximumTokenLength).contains(t.count), t.allSatisfy({ (0x21...0x7E).contains($0) })
        else { fuzzFail("unusable token returned: \(t)") }
    }
    let target = "/events/x?" + s[5]
    let redacted = TokenSource.redactedQuery(target)
    func count(_ x: String) -> Int { x.utf8.filter { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: ";") }.count }
    guard count(redacted) == count(target) else { fuzzFail("redaction changed the parameters") }
    if !s[4].isEmpty, !s[4].contains("&"), !s[4].contains(";"), !s[4].contains("REDACTED") {
        let withToken = TokenSource.redactedQuery("/e?a=1&authorization=" + s[4] + "&b=2")
        guard withToken == "/e?a=1&authorization=REDACTED&b=2" else { fuzzFail("token not redacted: \(withToken)") }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJWT(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard size >= 1 else { return 0 }
    let rest = UnsafeRawBufferPointer(rebasing: input[1...])
    switch input[0] % 4 {
    case 0: fuzzRawToken(Array(rest))
    case 1: fuzzMintedClaims(Array(rest))
    case 2: fuzzPattern(fields(rest, count: 4))
    default: fuzzSources(fields(rest, count: 6))
    }
    return 0
}
