internal import CJWT

/// Verifies JSON Web Tokens (compact form) with one key, and returns what they grant.
///
/// The key decides the algorithm: a secret means HS256, an RSA public key RS256, a P-256 public
/// key ES256. A token whose header names any other algorithm — `none` included — is refused
/// before any signature check, so a token cannot pick how it is verified.
///
/// A token is accepted only if all of these hold, checked in this order:
/// 1. at most ``maximumTokenLength`` bytes, only base64url characters and two dots;
/// 2. three segments, each strict unpadded base64url; header and claims are JSON objects
///    (strict JSON: no duplicate member names, nesting at most 16 deep);
/// 3. header `alg` is exactly the key's algorithm; `typ`, if present, is `JWT`; no `crit`;
/// 4. `exp` and `nbf`, if present, are integers; `sub`, if present, a string; the `microsse`
///    claim, if present, an object whose `subscribe` and `publish` members, if present, are
///    arrays of valid ``ChannelPattern``s;
/// 5. the signature verifies (libjwt over OpenSSL), and libjwt agrees on the algorithm;
/// 6. `now` lies in `[nbf - leeway, exp + leeway)`, with ``leeway`` seconds.
///
/// A verifier is immutable and may be used from any thread.
public struct JWTVerifier: Sendable {
    /// The signature algorithms a verifier can be configured for.
    public enum Algorithm: String, Sendable, CustomStringConvertible {
        /// HMAC with SHA-256 and a shared secret.
        case hs256 = "HS256"
        /// RSASSA-PKCS1-v1_5 with SHA-256 and an RSA public key.
        case rs256 = "RS256"
        /// ECDSA on P-256 with SHA-256 and an EC public key.
        case es256 = "ES256"

        /// The JWA name, e.g. `RS256`.
        public var description: String { rawValue }

        fileprivate var libjwt: jwt_alg_t {
            switch self {
            case .hs256: return JWT_ALG_HS256
            case .rs256: return JWT_ALG_RS256
            case .es256: return JWT_ALG_ES256
            }
        }
    }

    /// The longest token accepted, in bytes.
    public static let maximumTokenLength = 8192
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    public static let leeway = 30
    /// The shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
    public static let minimumSecretLength = 32

    /// The algorithm every accepted token must name.
    public let algorithm: Algorithm
    /// The bytes libjwt verifies with: the secret, or the canonical PEM of the public key.
    let key: [UInt8]

    /// A verifier for HS256 tokens signed with `secret` (at least 32 bytes).
    public init(secret: [UInt8]) throws(AuthError) {
        guard secret.count >= Self.minimumSecretLength else {
            throw AuthError(.invalidKey, "HS256 secret must be at least \(Self.minimumSecretLength) bytes")
        }
        guard secret.count <= Int(Int32.max) else { throw AuthError(.invalidKey, "HS256 secret is too long") }
        algorithm = .hs256
        key = secret
    }

    /// A verifier for RS256 (RSA key, at least 2048 bits) or ES256 (P-256 key) tokens, chosen
    /// by the PEM `PUBLIC KEY` given; private keys, certificates and other key types are refused.
    public init(publicKeyPEM: String) throws(AuthError) {
        let parsed = try PublicKey(pem: publicKeyPEM)
        algorithm = parsed.algorithm
        key = parsed.canonicalPEM
    }

    /// Verifies `token` at time `now` (seconds since the epoch) and returns its claims.
    ///
    /// Throws an ``AuthError`` whose `reason` can be sent as a 401 body.
    public func verify(_ token: String, now: Int) throws(AuthError) -> Claims {
        try verify(token, now: now, profile: .jwt).claims
    }

    /// The header `typ` a token must carry.
    package enum Profile: Sendable {
        /// `JWT` or none (this module's tokens, and Mercure draft-07's).
        case jwt
        /// `at+jwt` or `application/at+jwt`, case-insensitively (RFC 9068 access tokens).
        case accessToken
    }

    /// ``verify(_:now:)`` for a token of `profile`, returning its claims object too (for claims
    /// this module does not read, such as Mercure's). A JSON number is kept as its text.
    package func verify(
        _ token: String, now: Int, profile: Profile
    ) throws(AuthError) -> (claims: Claims, payload: JSONValue) {
        let bytes = Array(token.utf8)
        let parts = try Self.split(bytes)
        guard let header = Base64.decodeURL(parts.header).flatMap(JSONParser.parse), case .object = header else {
            throw AuthError(.malformedToken, "token header is not base64url JSON object")
        }
        try checkHeader(header, profile: profile)
        guard let payload = Base64.decodeURL(parts.payload).flatMap(JSONParser.parse) else {
            throw AuthError(.malformedToken, "token claims are not base64url JSON")
        }
        guard case .object = payload else { throw AuthError(.malformedToken, "token claims are not a JSON object") }
        guard let signature = Base64.decodeURL(parts.signature), !signature.isEmpty else {
            throw AuthError(.malformedToken, "token signature is not base64url")
        }
        // Claim types are checked before the signature (libjwt's JSON reader refuses some claims
        // ours reads, e.g. integers beyond 64 bits, and would report them as a bad signature);
        // times only after it, so that a forged token learns nothing about them.
        let claims = try Claims(json: payload)
        switch profile {
        case .jwt: try checkSignature(bytes)
        case .accessToken: try checkSignatureWithGnuTLS(bytes, signature: signature)
        }
        try Self.checkTimes(claims, now: now)
        return (claims, payload)
    }

    /// The three segments of a compact JWS, after the size and alphabet checks.
    static func split(
        _ bytes: [UInt8]
    ) throws(AuthError) -> (header: ArraySlice<UInt8>, payload: ArraySlice<UInt8>, signature: ArraySlice<UInt8>) {
        guard !bytes.isEmpty else { throw AuthError(.malformedToken, "token is empty") }
        guard bytes.count <= maximumTokenLength else {
            throw AuthError(.tokenTooLarge, "token is longer than \(maximumTokenLength) bytes")
        }
        guard bytes.allSatisfy({ $0 == UInt8(ascii: ".") || Base64.digit($0, url: true) != nil }) else {
            throw AuthError(.malformedToken, "token holds a character outside base64url")
        }
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw AuthError(.malformedToken, "token has \(parts.count) segments, not 3")
        }
        return (parts[0], parts[1], parts[2])
    }

    private func checkHeader(_ header: JSONValue, profile: Profile) throws(AuthError) {
        guard case .string(let alg)? = header["alg"] else {
            throw AuthError(.malformedToken, "token header has no alg")
        }
        guard alg.utf8.elementsEqual(algorithm.rawValue.utf8) else {
            // Name the algorithm only if it is a registered one: the reason never echoes
            // arbitrary token content.
            let known = [
                "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256",
                "PS384", "PS512", "EdDSA",
            ]
            guard known.contains(where: { $0.utf8.elementsEqual(alg.utf8) }) else {
                throw AuthError(.algorithmRefused, "token algorithm is not accepted (expected \(algorithm))")
            }
            if alg == "none" { throw AuthError(.algorithmRefused, "token algorithm none is not accepted") }
            throw AuthError(.algorithmRefused, "token algorithm \(alg) is not accepted (expected \(algorithm))")
        }
        switch profile {
        case .jwt:
            if let typ = header["typ"] {
                guard case .string(let t) = typ, t.utf8.count == 3, t.uppercased() == "JWT" else {
                    throw AuthError(.malformedToken, "token type is not JWT")
                }
            }
        case .accessToken:
            guard case .string(let t)? = header["typ"],
                t.lowercased() == "at+jwt" || t.lowercased() == "application/at+jwt"
            else {
                throw AuthError(.malformedToken, "token type is not at+jwt")
            }
        }
        guard header["crit"] == nil else { throw AuthError(.malformedToken, "token header crit is not supported") }
    }

    /// Lets libjwt check the signature, then checks that it used the algorithm we expect.
    private func checkSignature(_ token: [UInt8]) throws(AuthError) {
        var jwt: OpaquePointer?
        let rc = (token + [0]).withUnsafeBufferPointer { t in
            key.withUnsafeBufferPointer { k in
                t.baseAddress!.withMemoryRebound(to: CChar.self, capacity: t.count) { cToken in
                    jwt_decode(&jwt, cToken, k.baseAddress, Int32(k.count))
                }
            }
        }
        defer { jwt_free(jwt) }
        guard rc == 0, let jwt else { throw AuthError(.signatureInvalid, "token signature invalid") }
        // Belt and braces: libjwt picks the algorithm from the token's header. Ours was checked
        // above, but a token libjwt read differently must not pass.
        guard jwt_get_alg(jwt) == algorithm.libjwt else {
            throw AuthError(.algorithmRefused, "token algorithm is not accepted (expected \(algorithm))")
        }
        guard let alg = jwt_get_header(jwt, "alg"), String(cString: alg) == algorithm.rawValue else {
            throw AuthError(.algorithmRefused, "token algorithm is not accepted (expected \(algorithm))")
        }
    }

    private static func checkTimes(_ claims: Claims, now: Int) throws(AuthError) {
        if let exp = claims.expiresAt, now.subtractingClamped(leeway) >= exp {
            throw AuthError(.expired, "token expired")
        }
        if let nbf = claims.notBefore, now.addingClamped(leeway) < nbf {
            throw AuthError(.notYetValid, "token not yet valid")
        }
    }
}

extension Int {
    fileprivate func addingClamped(_ other: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    fileprivate func subtractingClamped(_ other: Int) -> Int {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other > 0 ? .min : .max) : difference
    }
}
