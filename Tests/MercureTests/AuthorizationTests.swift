import Foundation
import MicroSSE
import MicroSSEMercure
import MicroSSETestSupport
import Testing

/// A draft-08 hub's challenge: `challenge` with the `resource_metadata` parameter (RFC 9728).
private func withMetadata(_ challenge: String) -> String {
    let metadata = #"resource_metadata="https://hub.example/.well-known/oauth-protected-resource/.well-known/mercure""#
    return challenge == "Bearer" ? "Bearer " + metadata : challenge + ", " + metadata
}

/// `status` with the Bearer challenge `challenge`, a one-line reason containing `reason`.
private func expectRefused(
    _ r: SimpleResponse, _ status: Int, _ challenge: String?, _ reason: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(r.status == status, "status \(r.status) \(r.text)", sourceLocation: sourceLocation)
    #expect(r.text.contains(reason), "reason \(r.text.debugDescription)", sourceLocation: sourceLocation)
    #expect(r.text.split(separator: "\n").count == 1, sourceLocation: sourceLocation)
    #expect(r.header("WWW-Authenticate") == challenge.map(withMetadata), sourceLocation: sourceLocation)
    #expect(r.header("Content-Type")?.hasPrefix("text/event-stream") != true, sourceLocation: sourceLocation)
}

@Suite("Mercure draft-08: tokens, private updates, refusals")
struct AuthorizationTests {
    @Test(
        "publishing: no token 401 Bearer; a refused token 401 invalid_token; a topic not granted 403 insufficient_scope"
    )
    func publisherTokens() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let update = [("topic", "https://example.com/books/1"), ("data", "x")]
        expectRefused(try publish(hub, update, token: nil), 401, "Bearer", "needs a token")
        let refused: [(String, String)] = [
            (token08(publish: ["*"], typ: "JWT"), "at+jwt"),
            (token08(publish: ["*"], exp: nil), "no exp"),
            (token08(publish: ["*"], exp: TokenMint.now - 3_600), "expired"),
            (token08(publish: ["*"], iss: "https://evil.example"), "issuer"),
            (token08(publish: ["*"], iss: nil), "no iss"),
            (token08(publish: ["*"], aud: "https://other-hub.example/.well-known/mercure"), "audience"),
            (token08(publish: ["*"], aud: nil), "no aud"),
            (
                TokenMint.hs256(
                    "{}", key: "another-secret-of-at-least-32-bytes!!", header: #"{"alg":"HS256","typ":"at+jwt"}"#),
                "signature"
            ),
            (token07(publish: ["*"]), "at+jwt"),  // draft-07 tokens are not draft-08 ones
        ]
        for (token, reason) in refused {
            expectRefused(try publish(hub, update, token: token), 401, #"Bearer error="invalid_token""#, reason)
        }
        let narrow = token08(publish: ["https://example.com/books/2"])
        expectRefused(try publish(hub, update, token: narrow), 403, #"Bearer error="insufficient_scope""#, "publishing")
        // Every topic must be granted, the alternate ones too.
        let oneOfTwo = token08(publish: ["https://example.com/books/1"])
        let two = [("topic", "https://example.com/books/1"), ("topic", "https://example.com/books/2")]
        expectRefused(try publish(hub, two, token: oneOfTwo), 403, #"Bearer error="insufficient_scope""#, "every topic")
        #expect(try publish(hub, update, token: oneOfTwo).status == 200)
        // aud may be an array holding the hub's identifier.
        #expect(hub.statistics.published == 1)
    }

    @Test("an RS256 at+jwt token verifies with --jwt-key (the GnuTLS path), a tampered one does not")
    func rs256Token() throws {
        let hub = try mercureHub { $0.jwt = JWTSettings(publicKeyPEM: TokenMint.rsa.publicPEM) }
        defer { hub.stop() }
        let claims =
            #"{"iss":"\#(issuer)","aud":["x","\#(audience)"],"exp":\#(TokenMint.now + 600),"authorization_details":[{"type":"https://mercure.rocks/authorization-detail","actions":["publish"],"topics":[{"match":"*"}]}]}"#
        let token = try rs256AccessToken(claims)
        #expect(try publish(hub, [("topic", "t")], token: token).status == 200)
        var tampered = Array(token.utf8)
        tampered[tampered.count - 5] =
            tampered[tampered.count - 5] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        let r = try publish(hub, [("topic", "t")], token: String(decoding: tampered, as: UTF8.self))
        expectRefused(r, 401, #"Bearer error="invalid_token""#, "signature")
    }

    @Test("an ES256 at+jwt token (r || s signature) verifies with a P-256 --jwt-key; another key's does not")
    func es256Token() throws {
        let (keyPath, publicPEM) = try ecKey("a")
        let (otherKeyPath, _) = try ecKey("b")
        let hub = try mercureHub { $0.jwt = JWTSettings(publicKeyPEM: publicPEM) }
        defer { hub.stop() }
        let claims =
            #"{"iss":"\#(issuer)","aud":"\#(audience)","exp":\#(TokenMint.now + 600),"authorization_details":[{"type":"https://mercure.rocks/authorization-detail","actions":["publish"],"topics":[{"match":"*"}]}]}"#
        for _ in 0..<8 {  // r and s of varying lengths in DER
            #expect(try publish(hub, [("topic", "t")], token: try es256AccessToken(claims, key: keyPath)).status == 200)
        }
        let wrong = try publish(hub, [("topic", "t")], token: try es256AccessToken(claims, key: otherKeyPath))
        expectRefused(wrong, 401, #"Bearer error="invalid_token""#, "signature")
    }

    @Test("a token of an unsupported match_type, or with a malformed Mercure detail, is refused whole")
    func malformedDetails() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let d = "https://mercure.rocks/authorization-detail"
        let bad = [
            #"{"type":"\#(d)","actions":["publish"],"topics":[{"match":"https://example.com/:id","match_type":"regexp"}]}"#,
            #"{"type":"\#(d)","actions":[],"topics":[{"match":"*"}]}"#,
            #"{"type":"\#(d)","actions":["publish",7],"topics":[{"match":"*"}]}"#,
            #"{"type":"\#(d)","actions":["publish"],"topics":["*"]}"#,
        ]
        for (detail, reason) in zip(bad, ["regexp", "no actions", "non-string action", "string match"]) {
            let token = token08(publish: ["*"], extraDetails: [detail])
            expectRefused(
                try publish(hub, [("topic", "t")], token: token), 401, #"Bearer error="invalid_token""#, reason)
        }
        // Another RFC 9396 type is ignored, an unknown action grants nothing.
        let other = #"{"type":"https://other.example","whatever":1}"#
        let unknownAction = #"{"type":"\#(d)","actions":["fly"],"topics":[{"match":"*"}]}"#
        #expect(try publish(hub, [("topic", "t")], token: token08(publish: ["t"], extraDetails: [other])).status == 200)
        let r = try publish(hub, [("topic", "t")], token: token08(extraDetails: [unknownAction]))
        expectRefused(r, 403, #"Bearer error="insufficient_scope""#, "no publishing")
    }

    @Test("400 for reserved and invalid values, 413 past the topic bounds, 415 for another body type")
    func publishRefusals() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let token = token08(publish: ["*"])
        let bad: [[(String, String)]] = [
            [("data", "no topic")],
            [("topic", "*")],
            [("topic", "https://hub.example/.well-known/mercure/subscriptions/x")],
            [("topic", "http://other.example/.well-known/mercure")],
            [("topic", "/.well-known/%6Dercure/subscriptions")],
            [("topic", "/.well-known/mercure/../mercure/x")],
            [("topic", "/a/../.well-known/mercure")],
            [("topic", "mercure/subscriptions")],  // relative: resolved against the hub's URL
            [("topic", "ok"), ("topic", "ok\u{7}")],
            [("topic", "zero\u{200B}width")],
            [("topic", "t"), ("type", "mercure")],
            [("topic", "t"), ("type", "a\u{85}b")],
            [("topic", "t"), ("id", "#1")],
            [("topic", "t"), ("id", "earliest")],
            [("topic", "t"), ("id", "")],
            [("topic", "t"), ("id", "bidi\u{202E}")],
            [("topic", "t"), ("retry", "10s")],
            [("topic", "t"), ("retry", "")],
            [("topic", "t"), ("retry", "-1")],
        ]
        for fields in bad {
            let r = try publish(hub, fields, token: token)
            #expect(r.status == 400, "\(fields): \(r.status) \(r.text)")
            #expect(r.text.split(separator: "\n").count == 1)
        }
        // Not reserved: other paths, opaque IRIs, a look-alike prefix.
        for topic in [
            "urn:x:/.well-known/mercure", "https://example.com/.well-known/mercurey", "/.well-known/mercure-x",
        ] {
            #expect(try publish(hub, [("topic", topic)], token: token).status == 200, "\(topic)")
        }
        let many = (0...MercureSettings.maxTopicsPerUpdate).map { ("topic", "t\($0)") }
        #expect(try publish(hub, many, token: token).status == 413)
        let long = [("topic", String(repeating: "x", count: MercureSettings.maxTopicLength + 1))]
        #expect(try publish(hub, long, token: token).status == 413)
        #expect(try publish(hub, [("topic", "t")], token: token, contentType: "application/json").status == 415)
        // Unknown fields are ignored.
        #expect(try publish(hub, [("topic", "t"), ("future", "x")], token: token).status == 200)
    }

    @Test(
        "the protected resource metadata (RFC 9728) names the resource, the detail type, the cookie and the matcher types"
    )
    func metadata() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let r = try httpRequest(port: hub.port, path: "/.well-known/oauth-protected-resource/.well-known/mercure")
        #expect(r.status == 200 && r.header("Content-Type")?.hasPrefix("application/json") == true)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        #expect(doc["resource"] as? String == audience)
        #expect(
            doc["authorization_details_types_supported"] as? [String] == ["https://mercure.rocks/authorization-detail"])
        #expect(doc["bearer_methods_supported"] as? [String] == ["header"])
        #expect(doc["mercure_cookie"] as? String == "__Secure-mercure_access_token")
        #expect(doc["mercure_matcher_types_supported"] as? [String] == ["exact", "urlpattern"])
        // A draft-07 hub publishes none (the draft's hint that a hub is pre-standard).
        let legacy = try mercureHub(legacy: true)
        defer { legacy.stop() }
        #expect(
            try httpRequest(port: legacy.port, path: "/.well-known/oauth-protected-resource/.well-known/mercure").status
                == 404)
    }

    @Test("a publish without a valid token is refused on its head, before its body is read")
    func refusedOnHead() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let c = try RawConnection(port: hub.port)
        defer { c.close() }
        try c.send(
            "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                + "Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
        let head = try c.readHead()
        #expect(head.status == 401)
        #expect(head.header("WWW-Authenticate") == withMetadata("Bearer"))
    }

    @Test(
        "subscribing: 400 for unknown or missing matchers and too many; 401 for a refused token; anonymous is allowed")
    func subscribeRefusals() throws {
        let hub = try mercureHub { $0.maxChannelsPerStream = 3 }
        defer { hub.stop() }
        for query in [
            [("topic", "t")], [("match_urlpatern", "t")], [("matchx", "t")], [("MATCH", "t")],
            [("match", "t"), ("match", "u"), ("match", "v"), ("match", "w")], [("match", "a\u{0}b")],
        ] {
            let r = try subscribeRefused(hub, query)
            #expect(r.status == 400, "\(query): \(r.status) \(r.text)")
        }
        let bad = try subscribeRefused(
            hub, [("match", "t")], headers: [("Authorization", "Bearer \(token08(typ: "JWT"))")])
        expectRefused(bad, 401, #"Bearer error="invalid_token""#, "at+jwt")
        let basic = try subscribeRefused(hub, [("match", "t")], headers: [("Authorization", "Basic eDp5")])
        expectRefused(basic, 400, #"Bearer error="invalid_request""#, "Bearer")
        let anonymous = try subscribe(hub, [("match", "t")])
        defer { anonymous.close() }
        #expect(anonymous.status == 200)
        #expect(hub.statistics.clients == 1)
    }

    @Test("private updates reach only streams whose token grants one of their topics (bearer or cookie)")
    func privateUpdates() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let books = [("match", "https://example.com/books/1")]
        let anonymous = try subscribe(hub, books)
        defer { anonymous.close() }
        let other = try subscribe(
            hub, books, headers: [("Authorization", "Bearer \(token08(subscribe: ["https://example.com/books/2"]))")])
        defer { other.close() }
        // Granted the alternate topic only: the routing matcher selects the canonical one.
        let alternate = try subscribe(
            hub, books,
            headers: [
                (
                    "Cookie",
                    "a=b; __Secure-mercure_access_token=\(token08(subscribe: ["https://example.com/users/42/books/1"]))"
                )
            ])
        defer { alternate.close() }
        // The header wins over a cookie, which is then ignored (here an invalid one).
        let bearer = try subscribe(
            hub, books,
            headers: [
                ("Authorization", "Bearer \(token08(subscribe: ["*"]))"),
                ("Cookie", "__Secure-mercure_access_token=junk"),
            ])
        defer { bearer.close() }
        for s in [anonymous, other, alternate, bearer] { #expect(s.status == 200) }
        let token = token08(publish: ["*"])
        let secret = try publish(
            hub,
            [
                ("topic", "https://example.com/books/1"), ("topic", "https://example.com/users/42/books/1"),
                ("private", ""), ("data", "secret"),
            ], token: token)
        #expect(secret.status == 200)
        let open = try publish(hub, [("topic", "https://example.com/books/1"), ("data", "public")], token: token)
        #expect(try anonymous.next()?.id == open.text)
        #expect(try other.next()?.id == open.text)
        #expect(try alternate.events(2).map(\.id) == [secret.text, open.text])
        #expect(try bearer.events(2).map(\.data) == ["secret", "public"])
    }

    @Test("a stream's token expiring ends the stream")
    func expiryEndsStream() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let s = try subscribe(
            hub, [("match", "t")],
            headers: [("Authorization", "Bearer \(token08(subscribe: ["t"], exp: TokenMint.now + 2))")])
        defer { s.close() }
        #expect(s.status == 200)
        #expect(try s.waitForEnd(timeout: 10) || s.brokenOff)
    }
}

/// An RS256 access token (`typ: at+jwt`) signed with ``TokenMint/rsa``'s private key.
private func rs256AccessToken(_ claims: String) throws -> String {
    let input =
        TokenMint.b64url(Array(#"{"alg":"RS256","typ":"at+jwt"}"#.utf8)) + "." + TokenMint.b64url(Array(claims.utf8))
    return input + "." + TokenMint.b64url(try sign(input, key: TokenMint.rsa.privatePath))
}

/// A P-256 private key file and its public PEM, made once per name.
private func ecKey(_ name: String) throws -> (privatePath: String, publicPEM: String) {
    let priv = TokenMint.directory.appendingPathComponent("ec-\(name).key").path
    let pub = priv + ".pub"
    if !FileManager.default.fileExists(atPath: pub) {
        try openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", priv])
        try openssl(["ec", "-in", priv, "-pubout", "-out", pub])
    }
    return (priv, try String(contentsOfFile: pub, encoding: .utf8))
}

/// An ES256 access token: openssl's DER signature turned into JWS's 64-byte r || s.
private func es256AccessToken(_ claims: String, key: String) throws -> String {
    let input =
        TokenMint.b64url(Array(#"{"alg":"ES256","typ":"at+jwt"}"#.utf8)) + "." + TokenMint.b64url(Array(claims.utf8))
    let der = try sign(input, key: key)
    // SEQUENCE { INTEGER r, INTEGER s }, each integer left-padded or trimmed to 32 bytes.
    guard der.count > 8, der[0] == 0x30 else { throw TestClientError("not a DER signature") }
    var i = 2
    var raw: [UInt8] = []
    for _ in 0..<2 {
        guard der[i] == 0x02 else { throw TestClientError("not a DER integer") }
        let n = Int(der[i + 1])
        let value = Array(der[(i + 2)..<(i + 2 + n)].drop { $0 == 0 })
        raw += [UInt8](repeating: 0, count: 32 - value.count) + value
        i += 2 + n
    }
    return input + "." + TokenMint.b64url(raw)
}

/// `openssl dgst -sha256 -sign key` over `input`.
private func sign(_ input: String, key: String) throws -> [UInt8] {
    let inPath = TokenMint.directory.appendingPathComponent("sig-\(UUID().uuidString).in").path
    let outPath = inPath + ".sig"
    defer {
        try? FileManager.default.removeItem(atPath: inPath)
        try? FileManager.default.removeItem(atPath: outPath)
    }
    try Data(input.utf8).write(to: URL(fileURLWithPath: inPath))
    try openssl(["dgst", "-sha256", "-sign", key, "-binary", "-out", outPath, inPath])
    return Array(try Data(contentsOf: URL(fileURLWithPath: outPath)))
}

private func openssl(_ arguments: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    p.arguments = arguments
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw TestClientError("openssl \(arguments.first ?? "") failed") }
}
