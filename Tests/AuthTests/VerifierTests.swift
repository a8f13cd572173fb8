import CJWT
import Testing

@testable import MicroSSEAuth

@Suite("JWT verifier: algorithms, signatures, times")
struct VerifierTests {
    let hs = try! JWTVerifier(secret: secret)
    let rs = try! JWTVerifier(publicKeyPEM: KeyPair.rsa.publicPEM)
    let es = try! JWTVerifier(publicKeyPEM: KeyPair.ec.publicPEM)

    @Test("a valid HS256 token is accepted and its grants read")
    func validHS256() throws {
        let claims = try hs.verify(
            mintHS(
                #"{"sub":"u42","exp":1700000100,"nbf":1699999000,"microsse":{"subscribe":["news","user.42.*"],"publish":["*"]}}"#
            ),
            now: now)
        #expect(claims.subject == "u42")
        #expect(claims.expiresAt == 1_700_000_100)
        #expect(claims.notBefore == 1_699_999_000)
        #expect(claims.subscribe.map(\.description) == ["news", "user.42.*"])
        #expect(claims.canSubscribe("user.42.inbox"))
        #expect(!claims.canSubscribe("user.43.inbox"))
        #expect(claims.canPublish("anything"))
    }

    @Test("a valid RS256 token is accepted with the RSA public key")
    func validRS256() throws {
        #expect(rs.algorithm == .rs256)
        #expect(try rs.verify(mintRS(), now: now).canSubscribe("news"))
    }

    @Test("a valid ES256 token is accepted with the P-256 public key")
    func validES256() throws {
        #expect(es.algorithm == .es256)
        #expect(try es.verify(mintES(), now: now).canSubscribe("news"))
    }

    @Test("a token without the microsse claim is valid and grants nothing")
    func noGrants() throws {
        let claims = try hs.verify(mintHS(#"{"sub":"x"}"#), now: now)
        #expect(claims.subscribe.isEmpty && claims.publish.isEmpty)
        #expect(!claims.canSubscribe("news"))
    }

    @Test("the none algorithm is refused, with or without a signature")
    func noneRefused() {
        let payload = b64url(#"{"microsse":{"subscribe":["*"]}}"#)
        for v in [hs, rs, es] {
            for token in ["eyJhbGciOiJub25lIn0.\(payload).", "eyJhbGciOiJub25lIn0.\(payload).c2ln"] {
                let e = refusal { () throws(AuthError) in try v.verify(token, now: now) }
                #expect(e?.code == .algorithmRefused || e?.code == .malformedToken)
            }
            let e = refusal { () throws(AuthError) in try v.verify("eyJhbGciOiJub25lIn0.\(payload).c2ln", now: now) }
            #expect(e?.reason == "token algorithm none is not accepted")
        }
        // "None" and "NONE" are not the algorithm either.
        for alg in ["None", "NONE", "nOnE"] {
            let t = b64url(#"{"alg":"\#(alg)"}"#) + "." + payload + ".c2ln"
            #expect(refusal { () throws(AuthError) in try hs.verify(t, now: now) }?.code == .algorithmRefused)
        }
    }

    @Test("HS/RS confusion: an HS256 token signed with the RSA public key bytes is refused")
    func hsWithPublicKeyRefused() {
        let pem = Array(KeyPair.rsa.publicPEM.utf8)
        let forged = mint(JWT_ALG_HS256, key: pem, claims: #"{"microsse":{"subscribe":["*"]}}"#)
        // The quirk being defended against: libjwt takes the algorithm from the token's header,
        // so on its own it accepts this forgery when handed the PEM as the key.
        #expect(libjwtAccepts(forged, key: pem))
        let e = refusal { () throws(AuthError) in try rs.verify(forged, now: now) }
        #expect(e?.code == .algorithmRefused)
        #expect(e?.reason == "token algorithm HS256 is not accepted (expected RS256)")
        // Same with an EC key.
        let ecForged = mint(JWT_ALG_HS256, key: Array(KeyPair.ec.publicPEM.utf8))
        #expect(refusal { () throws(AuthError) in try es.verify(ecForged, now: now) }?.code == .algorithmRefused)
    }

    @Test("libjwt on its own accepts any token as alg none when given no key; the verifier always passes one")
    func libjwtWithoutKey() {
        // The quirk: jwt_decode with a NULL key skips verification and reports JWT_ALG_NONE.
        var jwt: OpaquePointer?
        let forged = mintHS(key: Array("another secret, 32 bytes long!!!".utf8))
        #expect(jwt_decode(&jwt, forged, nil, 0) == 0)
        #expect(jwt_get_alg(jwt) == JWT_ALG_NONE)
        jwt_free(jwt)
        // alg none: accepted without a key, refused (EINVAL) with one.
        let none = "eyJhbGciOiJub25lIn0." + b64url(#"{"microsse":{"subscribe":["*"]}}"#) + "."
        #expect(jwt_decode(&jwt, none, nil, 0) == 0)
        jwt_free(jwt)
        #expect(!libjwtAccepts(none, key: secret))
        // A verifier cannot exist without a key, and checks the algorithm libjwt used.
        #expect(refusal { () throws(AuthError) in try hs.verify(forged, now: now) }?.code == .signatureInvalid)
    }

    @Test("HS/RS confusion: an RS256 token is refused by an HS256 verifier")
    func rsRefusedByHS() {
        let e = refusal { () throws(AuthError) in try hs.verify(mintRS(), now: now) }
        #expect(e?.reason == "token algorithm RS256 is not accepted (expected HS256)")
        #expect(refusal { () throws(AuthError) in try hs.verify(mintES(), now: now) }?.code == .algorithmRefused)
    }

    @Test("an RS256 token is refused by an ES256 verifier, and an ES256 token by an RS256 one")
    func rsEsConfusion() {
        let e = refusal { () throws(AuthError) in try es.verify(mintRS(), now: now) }
        #expect(e?.reason == "token algorithm RS256 is not accepted (expected ES256)")
        #expect(refusal { () throws(AuthError) in try rs.verify(mintES(), now: now) }?.code == .algorithmRefused)
    }

    @Test("other algorithms of the same family are refused (HS512, RS512, ES384, PS256)")
    func sameFamilyRefused() {
        let hs512 = mint(JWT_ALG_HS512, key: secret)
        #expect(refusal { () throws(AuthError) in try hs.verify(hs512, now: now) }?.code == .algorithmRefused)
        let rs512 = mint(JWT_ALG_RS512, key: Array(KeyPair.rsa.privatePEM.utf8))
        #expect(refusal { () throws(AuthError) in try rs.verify(rs512, now: now) }?.code == .algorithmRefused)
        let ps = handMadeRS(header: #"{"alg":"PS256"}"#, claims: "{}")
        #expect(refusal { () throws(AuthError) in try rs.verify(ps, now: now) }?.code == .algorithmRefused)
        let odd = handMadeHS(header: #"{"alg":"HS256\u0000"}"#, claims: "{}")
        let e = refusal { () throws(AuthError) in try hs.verify(odd, now: now) }
        #expect(e?.reason == "token algorithm is not accepted (expected HS256)")
    }

    @Test("a header with alg twice is refused, whichever comes first")
    func duplicateAlgRefused() {
        for header in [#"{"alg":"HS256","alg":"none"}"#, #"{"alg":"none","alg":"HS256"}"#] {
            let t = handMadeHS(header: header, claims: "{}")
            #expect(refusal { () throws(AuthError) in try hs.verify(t, now: now) }?.code == .malformedToken)
        }
    }

    @Test("segments libjwt's lenient base64 reads (stray characters, padding) are refused even when signed")
    func lenientBase64Refused() {
        let h = b64url(#"{"alg":"HS256"}"#)
        let p = b64url(#"{"microsse":{"subscribe":["*"]}}"#)
        for input in [h + ".!!" + p, h + "." + p + "==", h + "=." + p, "!" + h + "." + p] {
            let token = signedHS(input)
            // The quirk: libjwt skips what is not base64 and accepts these.
            #expect(libjwtAccepts(token, key: secret), "\(input)")
            #expect(refusal { () throws(AuthError) in try hs.verify(token, now: now) }?.code == .malformedToken)
        }
    }

    @Test("libjwt reads the last of two alg members; the verifier refuses both orders")
    func duplicateAlgLibjwtQuirk() {
        let lastWins = handMadeHS(header: #"{"alg":"none","alg":"HS256"}"#, claims: "{}")
        #expect(libjwtAccepts(lastWins, key: secret))
        #expect(refusal { () throws(AuthError) in try hs.verify(lastWins, now: now) }?.code == .malformedToken)
    }

    @Test("a header without alg, with alg not a string, with typ other than JWT, or with crit is refused")
    func headerChecks() {
        for header in [
            "{}", #"{"alg":1}"#, #"{"alg":["HS256"]}"#, #"{"alg":"HS256","typ":"at+jwt"}"#,
            #"{"alg":"HS256","typ":5}"#, #"{"alg":"HS256","crit":["exp"]}"#, #"["HS256"]"#,
        ] {
            let t = handMadeHS(header: header, claims: "{}")
            let e = refusal { () throws(AuthError) in try hs.verify(t, now: now) }
            #expect(e?.code == .malformedToken || e?.code == .algorithmRefused, "\(header)")
        }
        // typ JWT in any case, and no typ at all, are fine.
        for header in [#"{"alg":"HS256","typ":"jwt"}"#, #"{"alg":"HS256"}"#, #"{"typ":"JWT","alg":"HS256"}"#] {
            #expect((try? hs.verify(handMadeHS(header: header, claims: "{}"), now: now)) != nil, "\(header)")
        }
    }

    @Test("a bad signature is refused: other secret, other key, flipped byte, signature of another token")
    func badSignature() {
        let other = Array("another secret, 32 bytes long!!!".utf8)
        #expect(
            refusal { () throws(AuthError) in try hs.verify(mintHS(key: other), now: now) }?.code == .signatureInvalid)
        #expect(
            refusal { () throws(AuthError) in try rs.verify(mintRS(pair: .rsa2), now: now) }?.code == .signatureInvalid)
        #expect(
            refusal { () throws(AuthError) in try es.verify(mintES(pair: .ec2), now: now) }?.code == .signatureInvalid)
        for (v, token) in [(hs, mintHS()), (rs, mintRS()), (es, mintES())] {
            var parts = token.split(separator: ".").map(String.init)
            var sig = Array(parts[2].utf8)
            sig[3] = sig[3] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            parts[2] = String(decoding: sig, as: UTF8.self)
            let e = refusal { () throws(AuthError) in try v.verify(parts.joined(separator: "."), now: now) }
            #expect(e?.code == .signatureInvalid)
            #expect(e?.reason == "token signature invalid")
            // Claims changed under a valid signature.
            let swapped =
                parts[0] + "." + b64url(#"{"microsse":{"subscribe":["*"]}}"#) + "." + token.split(separator: ".")[2]
            #expect(refusal { () throws(AuthError) in try v.verify(swapped, now: now) }?.code == .signatureInvalid)
        }
    }

    @Test("a signature with non-zero unused bits in its last digit is refused (one spelling per token)")
    func nonCanonicalSignature() {
        let token = mintHS()
        // A 32-byte HMAC is 43 digits; the last carries 2 unused bits. Set one.
        var bytes = Array(token.utf8)
        let last = bytes.count - 1
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        bytes[last] = alphabet[alphabet.firstIndex(of: bytes[last])! | 1]
        let e = refusal { () throws(AuthError) in try hs.verify(String(decoding: bytes, as: UTF8.self), now: now) }
        #expect(e?.code == .malformedToken)
    }

    @Test("malformed tokens are refused: 1, 2, 4 segments, empty segments, bad base64url, not JSON, JSON array")
    func malformed() {
        let good = mintHS()
        let p = good.split(separator: ".").map(String.init)
        let cases = [
            "", "abc", p[0], p[0] + "." + p[1], good + "." + p[2], good + ".", "..", "." + p[1] + "." + p[2],
            p[0] + ".." + p[2], p[0] + "." + p[1] + ".",
            p[0] + "." + p[1] + "!" + "." + p[2], p[0] + "." + p[1] + "=." + p[2], "=" + good,
            p[0] + "." + "a" + "." + p[2],
            p[0] + "." + p[1].replacingOccurrences(of: "e", with: "+") + "." + p[2], good + " ", " " + good,
            good + "\0",
            p[0] + "." + b64url("not json") + "." + p[2], p[0] + "." + b64url("[1,2]") + "." + p[2],
            p[0] + "." + b64url(#"{"a":1,}"#) + "." + p[2], p[0] + "." + b64url("{} {}") + "." + p[2],
            p[0] + "." + b64url(Array(#"{"a":"\#u{FF}"}"#.utf8) + [0xFF]) + "." + p[2],
            b64url("not json") + "." + p[1] + "." + p[2], "eyJhbGciOiJIUzI1NiJ9" + "." + b64url("\"str\"") + "." + p[2],
        ]
        for token in cases {
            let e = refusal { () throws(AuthError) in try hs.verify(token, now: now) }
            #expect(e?.code == .malformedToken, "\(token.utf8.count) bytes")
        }
        #expect(
            refusal { () throws(AuthError) in try hs.verify("abc", now: now) }?.reason == "token has 1 segments, not 3")
    }

    @Test("a token longer than 8 KiB is refused before anything else; 8 KiB exactly is read")
    func oversize() {
        let big = String(repeating: "A", count: JWTVerifier.maximumTokenLength + 1)
        #expect(refusal { () throws(AuthError) in try hs.verify(big, now: now) }?.code == .tokenTooLarge)
        // A valid token padded to exactly the cap by a long subject.
        let base = mintHS(#"{"sub":""}"#).utf8.count
        let sub = String(repeating: "x", count: (JWTVerifier.maximumTokenLength - base) * 3 / 4)
        let token = mintHS(#"{"sub":"\#(sub)"}"#)
        #expect(token.utf8.count <= JWTVerifier.maximumTokenLength)
        #expect(token.utf8.count > JWTVerifier.maximumTokenLength - 4)
        #expect((try? hs.verify(token, now: now))?.subject == sub)
        let over = mintHS(#"{"sub":"\#(sub)xxxx"}"#)
        #expect(refusal { () throws(AuthError) in try hs.verify(over, now: now) }?.code == .tokenTooLarge)
    }

    @Test("exp in the past is refused beyond the 30 s leeway, accepted within it")
    func expiry() throws {
        #expect(JWTVerifier.leeway == 30)
        let token = mintHS(#"{"exp":\#(now)}"#)
        #expect(try hs.verify(token, now: now - 1).expiresAt == now)
        #expect(try hs.verify(token, now: now + 29).expiresAt == now)
        let e = refusal { () throws(AuthError) in try hs.verify(token, now: now + 30) }
        #expect(e?.code == .expired)
        #expect(e?.reason == "token expired")
        #expect(refusal { () throws(AuthError) in try hs.verify(token, now: .max) }?.code == .expired)
    }

    @Test("nbf in the future is refused beyond the 30 s leeway, accepted within it")
    func notBefore() throws {
        let token = mintHS(#"{"nbf":\#(now)}"#)
        #expect(try hs.verify(token, now: now - 30).notBefore == now)
        let e = refusal { () throws(AuthError) in try hs.verify(token, now: now - 31) }
        #expect(e?.code == .notYetValid)
        #expect(e?.reason == "token not yet valid")
        #expect(refusal { () throws(AuthError) in try hs.verify(token, now: .min) }?.code == .notYetValid)
    }

    @Test("exp, nbf and sub of the wrong type are refused; exp as a fraction is refused")
    func claimTypes() {
        for claims in [
            #"{"exp":"1700000100"}"#, #"{"exp":1.7e9}"#, #"{"exp":1700000100.5}"#, #"{"nbf":true}"#,
            #"{"exp":99999999999999999999999}"#, #"{"sub":42}"#, #"{"microsse":[]}"#,
            #"{"microsse":{"subscribe":"news"}}"#, #"{"microsse":{"subscribe":[1]}}"#,
            #"{"microsse":{"publish":["bad channel"]}}"#, #"{"microsse":{"subscribe":["a*b"]}}"#,
        ] {
            let token = handMadeHS(header: #"{"alg":"HS256"}"#, claims: claims)
            let e = refusal { () throws(AuthError) in try hs.verify(token, now: now) }
            #expect(e?.code == .invalidClaims, "\(claims)")
        }
    }

    @Test("an expired token with a bad signature reports the signature, not the expiry")
    func signatureBeforeTime() {
        let other = Array("another secret, 32 bytes long!!!".utf8)
        let token = mintHS(#"{"exp":1}"#, key: other)
        #expect(refusal { () throws(AuthError) in try hs.verify(token, now: now) }?.code == .signatureInvalid)
    }

    @Test("a reason never contains the token")
    func reasonsDoNotEchoToken() {
        let tokens = [mintHS(#"{"exp":1}"#), mintRS(), handMadeHS(header: #"{"alg":"XX-secret-XX"}"#, claims: "{}")]
        for token in tokens {
            let e = refusal { () throws(AuthError) in try hs.verify(token, now: now) }
            #expect(e != nil)
            for part in token.split(separator: ".") { #expect(!(e?.reason.contains(part) ?? true)) }
            #expect(!(e?.reason.contains("XX-secret-XX") ?? true))
        }
    }
}

@Suite("JWT verifier: keys")
struct KeyTests {
    @Test("an HS256 secret shorter than 32 bytes is refused")
    func shortSecret() {
        #expect(throws: AuthError.self) { try JWTVerifier(secret: Array(repeating: 1, count: 31)) }
        #expect(throws: AuthError.self) { try JWTVerifier(secret: []) }
        #expect((try? JWTVerifier(secret: Array(repeating: 1, count: 32)))?.algorithm == .hs256)
    }

    @Test("RSA and P-256 public keys pick RS256 and ES256; CRLF and surrounding text are tolerated")
    func keyTypes() throws {
        #expect(try JWTVerifier(publicKeyPEM: KeyPair.rsa.publicPEM).algorithm == .rs256)
        #expect(try JWTVerifier(publicKeyPEM: KeyPair.ec.publicPEM).algorithm == .es256)
        let crlf = KeyPair.ec.publicPEM.replacingOccurrences(of: "\n", with: "\r\n")
        let v = try JWTVerifier(publicKeyPEM: "a comment\n" + crlf)
        #expect(try v.verify(mintES(), now: now).canSubscribe("news"))
    }

    func keyRefusal(_ pem: String) -> String? {
        do {
            _ = try JWTVerifier(publicKeyPEM: pem)
            return nil
        } catch {
            #expect(error.code == .invalidKey)
            return error.reason
        }
    }

    @Test("private keys, certificates, PKCS#1, other curves, Ed25519, small RSA and junk are refused")
    func refusedKeys() throws {
        #expect(keyRefusal(KeyPair.rsa.privatePEM)?.contains("private key") == true)
        #expect(keyRefusal(KeyPair.ec.privatePEM)?.contains("private key") == true)
        let p384 = KeyPair.generate("p384", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"])
        #expect(keyRefusal(p384.publicPEM)?.contains("P-256") == true)
        let ed = KeyPair.generate("ed", ["-algorithm", "ED25519"])
        #expect(keyRefusal(ed.publicPEM)?.contains("EdDSA") == true)
        let small = KeyPair.generate("rsa1024", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"])
        #expect(keyRefusal(small.publicPEM) == "RSA key has 1024 bits; at least 2048 are required")
        let pkcs1 = String(
            decoding: try openssl(["rsa", "-in", KeyPair.rsa.privatePath, "-RSAPublicKey_out"]), as: UTF8.self)
        #expect(keyRefusal(pkcs1)?.contains("PKCS#1") == true)
        #expect(
            keyRefusal("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")?.contains("certificate")
                == true)
        #expect(keyRefusal("") != nil)
        #expect(keyRefusal("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n") != nil)
        #expect(keyRefusal("-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n") != nil)
        #expect(keyRefusal(KeyPair.rsa.publicPEM + KeyPair.ec.publicPEM)?.contains("more than one") == true)
        let truncated = KeyPair.rsa.publicPEM.replacingOccurrences(of: "-----END PUBLIC KEY-----", with: "")
        #expect(keyRefusal(truncated) != nil)
    }
}
