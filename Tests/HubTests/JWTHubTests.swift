import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

/// A hub requiring HS256 tokens signed with ``TokenMint/secret``.
private func jwtHub(_ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> Server {
    try makeHub {
        $0.jwt = JWTSettings(secret: TokenMint.secret)
        configure(&$0)
    }
}

/// `GET path` as an EventSource would send it, plus `headers`.
private func get(_ server: Server, _ path: String, _ headers: [(String, String)] = []) throws -> SimpleResponse {
    try httpRequest(port: server.port, path: path, headers: [("Accept", "text/event-stream")] + headers)
}

private func bearer(_ token: String) -> [(String, String)] { [("Authorization", "Bearer \(token)")] }

/// A 401 with a one-line reason containing `reason`, `WWW-Authenticate: Bearer`, and no stream.
private func expect401(_ r: SimpleResponse, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == 401, "status \(r.status) \(r.text)", sourceLocation: sourceLocation)
    #expect(r.text.contains(reason), "reason \(r.text.debugDescription)", sourceLocation: sourceLocation)
    #expect(isOneLine(r.text), sourceLocation: sourceLocation)
    #expect(r.header("WWW-Authenticate") == "Bearer", sourceLocation: sourceLocation)
    #expect(r.header("Content-Type")?.hasPrefix("text/event-stream") != true, sourceLocation: sourceLocation)
}

@Suite("JWT: who may subscribe and publish")
struct JWTHubTests {
    @Test("no token: 401 with a reason and WWW-Authenticate: Bearer; nothing streamed, no client counted")
    func noToken() throws {
        let hub = try jwtHub()
        defer { hub.stop() }
        expect401(try get(hub, "/events/news"), "channel news needs a token")
        expect401(try get(hub, "/events?channel=a&channel=b"), "channel a needs a token")
        #expect(hub.statistics.clients == 0)
    }

    @Test("refused tokens, each with its one-line reason: signature, none, malformed, expired, not yet valid")
    func refusedTokens() throws {
        let hub = try jwtHub()
        defer { hub.stop() }
        let now = TokenMint.now
        let grants = TokenMint.claims(subscribe: ["news"])
        let cases: [(String, String)] = [
            (TokenMint.hs256(grants, key: "another-secret-0123456789abcdef-xyz"), "token signature invalid"),
            (
                TokenMint.b64url(Array(#"{"alg":"none"}"#.utf8)) + "." + TokenMint.b64url(Array(grants.utf8)) + ".",
                "token algorithm none is not accepted"
            ),
            (TokenMint.hs256(grants, header: #"{"alg":"HS512"}"#), "token algorithm HS512 is not accepted"),
            ("abc.def", "token has 2 segments, not 3"),
            ("not a token at all", "needs a token"),  // a space: not a usable token
            (TokenMint.hs256(TokenMint.claims(subscribe: ["news"], exp: now - 120)), "token expired"),
            (TokenMint.hs256(TokenMint.claims(subscribe: ["news"], nbf: now + 120)), "token not yet valid"),
        ]
        for (token, reason) in cases {
            expect401(try get(hub, "/events/news", bearer(token)), reason)
        }
        // Within the verifier's 30 s leeway but past exp: a stream would end at once, so 401.
        expect401(
            try get(hub, "/events/news", bearer(TokenMint.hs256(TokenMint.claims(subscribe: ["news"], exp: now - 2)))),
            "token expired")
        // nbf within the leeway (an issuer clock running ahead) is accepted.
        let early = TokenMint.hs256(TokenMint.claims(subscribe: ["news"], nbf: now + 10))
        #expect(try subscribe(hub, "/events/news", headers: bearer(early)).status == 200)
    }

    @Test("key confusion: an RS256 hub refuses an HS256 token whose HMAC key is its public key PEM")
    func keyConfusion() throws {
        let hub = try makeHub { $0.jwt = JWTSettings(publicKeyPEM: TokenMint.rsa.publicPEM) }
        defer { hub.stop() }
        let grants = TokenMint.claims(subscribe: ["news"])
        let forged = TokenMint.hs256(grants, key: TokenMint.rsa.publicPEM)
        expect401(
            try get(hub, "/events/news", bearer(forged)), "token algorithm HS256 is not accepted (expected RS256)")
        #expect(try subscribe(hub, "/events/news", headers: bearer(TokenMint.rs256(grants))).status == 200)
    }

    @Test("a channel the token does not grant: 403 naming it, even beside granted ones")
    func forbiddenChannel() throws {
        let hub = try jwtHub()
        defer { hub.stop() }
        let token = TokenMint.hs256(TokenMint.claims(subscribe: ["user.1.*", "news"]))
        let r = try get(hub, "/events?channel=user.1.inbox&channel=user.2.inbox", bearer(token))
        #expect(r.status == 403)
        #expect(r.text == "token does not grant subscribing to channel user.2.inbox\n")
        #expect(try get(hub, "/events/user.10", bearer(token)).status == 403)
        let ok = try subscribe(hub, "/events?channel=user.1.inbox&channel=news", headers: bearer(token))
        try hub.publish("mine", to: "user.1.inbox")
        #expect(try ok.next()?.data == "mine")
        // A token without the microsse claim is valid and grants nothing: 403, not 401.
        #expect(try get(hub, "/events/news", bearer(TokenMint.hs256("{}"))).status == 403)
    }

    @Test("--public-channel: readable without a token; a mix with a private channel still needs one")
    func publicChannels() throws {
        let hub = try jwtHub { $0.publicChannels = ["news", "public.*"] }
        defer { hub.stop() }
        let a = try subscribe(hub, "/events?channel=news&channel=public.sport")
        expect401(try get(hub, "/events?channel=news&channel=secret"), "channel secret needs a token")
        let token = TokenMint.hs256(TokenMint.claims(subscribe: ["secret"]))
        let b = try subscribe(hub, "/events?channel=news&channel=secret", headers: bearer(token))
        try hub.publish("hello", to: "news")
        #expect(try a.next()?.data == "hello")
        #expect(try b.next()?.data == "hello")
    }

    @Test("token sources: the cookie microsseAuthorization and the query authorization; a broken header wins")
    func cookieAndQuery() throws {
        let hub = try jwtHub()
        defer { hub.stop() }
        let token = TokenMint.hs256(TokenMint.claims(subscribe: ["news"]))
        let byCookie = try subscribe(hub, "/events/news", headers: [("Cookie", "a=1; microsseAuthorization=\(token)")])
        let byQuery = try subscribe(hub, "/events/news?authorization=\(token)")
        try hub.publish("x", to: "news")
        #expect(try byCookie.next()?.data == "x")
        #expect(try byQuery.next()?.data == "x")
        // A present but broken Authorization header is not replaced by an ambient cookie.
        let r = try get(
            hub, "/events/news", [("Authorization", "Bearer "), ("Cookie", "microsseAuthorization=\(token)")])
        #expect(r.status == 401)
    }

    @Test("publishing needs a token whose publish list grants the channel, in Authorization: Bearer only")
    func publishGrants() throws {
        let hub = try jwtHub()
        defer { hub.stop() }
        let stream = try subscribe(
            hub, "/events/user.1.out", headers: bearer(TokenMint.hs256(TokenMint.claims(subscribe: ["*"]))))
        let publisher = TokenMint.hs256(TokenMint.claims(publish: ["user.1.*"]))
        #expect(try post(hub, "user.1.out", "sent", token: publisher).status == 202)
        #expect(try stream.next()?.data == "sent")
        let other = try post(hub, "user.2.out", "no", token: publisher)
        #expect(other.status == 403 && other.text == "token does not grant publishing to channel user.2.out\n")
        let subscriberOnly = TokenMint.hs256(TokenMint.claims(subscribe: ["*"]))
        #expect(try post(hub, "user.1.out", "no", token: subscriberOnly).status == 403)
        let none = try post(hub, "user.1.out", "no")
        #expect(none.status == 401 && none.header("WWW-Authenticate") == "Bearer")
        // A cookie (ambient credentials a cross-site form would send) does not publish.
        #expect(
            try post(hub, "user.1.out", "no", headers: [("Cookie", "microsseAuthorization=\(publisher)")]).status == 401
        )
        expect401(
            try post(hub, "user.1.out", "no", token: TokenMint.hs256(TokenMint.claims(publish: ["*"], exp: 1))),
            "token expired")
        #expect(hub.statistics.published == 1)
    }

    @Test("--publish-token beside JWT: either the static token or a granting JWT publishes")
    func staticTokenStillWorks() throws {
        let hub = try jwtHub { $0.publishToken = "static-publish-token" }
        defer { hub.stop() }
        #expect(try post(hub, "news", "a", token: "static-publish-token").status == 202)
        #expect(try post(hub, "news", "b", token: TokenMint.hs256(TokenMint.claims(publish: ["news"]))).status == 202)
        let wrong = try post(hub, "news", "c", token: "static-publish-tokem")
        #expect(wrong.status == 401 && wrong.text == "publish token invalid\n")
        #expect(try post(hub, "news", "d").status == 401)
        // The static token is a publish credential only: it does not subscribe.
        #expect(try get(hub, "/events/news", bearer("static-publish-token")).status == 401)
    }

    @Test("a token expiring mid-stream: a final microsse.expired event with its exp, then the final chunk")
    func expiryMidStream() throws {
        let hub = try jwtHub()
        defer { hub.stop() }
        let exp = TokenMint.now + 4  // whole seconds: at least 3 s away, room for a loaded machine
        let stream = try subscribe(
            hub, "/events/news", headers: bearer(TokenMint.hs256(TokenMint.claims(subscribe: ["news"], exp: exp))))
        let forever = try subscribe(
            hub, "/events/news", headers: bearer(TokenMint.hs256(TokenMint.claims(subscribe: ["news"]))))
        try hub.publish("before", to: "news")
        #expect(try stream.next()?.data == "before")
        let last = try #require(try stream.next(timeout: 8))
        #expect(last.type == "microsse.expired")
        #expect(last.data == "{\"exp\": \(exp)}")
        #expect(TokenMint.now >= exp)
        #expect(try stream.waitForEnd(timeout: 5))
        // Other streams go on.
        try hub.publish("after", to: "news")
        #expect(try forever.next()?.data == "before")
        #expect(try forever.next()?.data == "after")
        #expect(waitForClients(hub, 1))
    }

    @Test("one timer for every stream: a later-added earlier deadline fires first, each at its own exp")
    func expiryOrder() throws {
        let hub = try jwtHub()
        defer { hub.stop() }
        let now = TokenMint.now
        func open(_ exp: Int) throws -> EventStreamClient {
            try subscribe(
                hub, "/events/news", headers: bearer(TokenMint.hs256(TokenMint.claims(subscribe: ["news"], exp: exp))))
        }
        // Whole seconds: `now + 1` could be a few milliseconds away; leave room for a loaded machine.
        let late = try open(now + 6)
        let early = try open(now + 3)
        let first = try #require(try early.next(timeout: 8))
        #expect(first.type == "microsse.expired" && first.data == "{\"exp\": \(now + 3)}")
        #expect(try early.waitForEnd())
        #expect(TokenMint.now < now + 6)
        #expect(late.head.status == 200)
        let second = try #require(try late.next(timeout: 9))
        #expect(second.type == "microsse.expired" && second.data == "{\"exp\": \(now + 6)}")
        #expect(TokenMint.now >= now + 3)
        #expect(try late.waitForEnd())
    }

    @Test("the embedder's authorizer runs after the JWT check and sees the verified claims")
    func authorizerSeesClaims() throws {
        let hub = try jwtHub()
        defer { hub.stop() }
        hub.setAuthorizer { _, access, claims in
            if case .subscribe = access, claims?.subject != "alice" { return .deny(status: 403, reason: "alice only") }
            return .allow
        }
        let alice = TokenMint.hs256(TokenMint.claims(subscribe: ["news"], sub: "alice"))
        let bob = TokenMint.hs256(TokenMint.claims(subscribe: ["news"], sub: "bob"))
        #expect(try subscribe(hub, "/events/news", headers: bearer(alice)).status == 200)
        let r = try get(hub, "/events/news", bearer(bob))
        #expect(r.status == 403 && r.text == "alice only\n")
        // The JWT check comes first: a token that does not verify never reaches the authorizer.
        expect401(try get(hub, "/events/news", bearer(alice + "x")), "token")
    }

    @Test("CORS with credentials: a listed origin is echoed with Allow-Credentials (preflight too); * never is")
    func corsCredentials() throws {
        let hub = try jwtHub { $0.corsOrigins = ["https://app.example"] }
        defer { hub.stop() }
        let origin = [("Origin", "https://app.example")]
        let pre = try httpRequest(
            port: hub.port, method: "OPTIONS", path: "/events/news",
            headers: origin + [("Access-Control-Request-Method", "GET")])
        #expect(pre.header("Access-Control-Allow-Origin") == "https://app.example")
        #expect(pre.header("Access-Control-Allow-Credentials") == "true")
        let token = TokenMint.hs256(TokenMint.claims(subscribe: ["news"]))
        let c = try subscribe(hub, "/events/news", headers: origin + [("Cookie", "microsseAuthorization=\(token)")])
        #expect(c.head.header("Access-Control-Allow-Origin") == "https://app.example")
        #expect(c.head.header("Access-Control-Allow-Credentials") == "true")
        let refused = try get(hub, "/events/news", origin)
        #expect(refused.status == 401 && refused.header("Access-Control-Allow-Credentials") == "true")

        let any = try jwtHub { $0.corsOrigins = ["*"] }
        defer { any.stop() }
        let r = try httpRequest(port: any.port, path: "/healthz", headers: origin)
        #expect(r.header("Access-Control-Allow-Origin") == "*")
        #expect(r.header("Access-Control-Allow-Credentials") == nil)
    }

    @Test("configuration: a short secret, a bad key, a bad pattern and publicChannels without jwt are refused")
    func validation() throws {
        func refusal(_ configure: (inout ServerConfiguration) -> Void) -> String? {
            var c = ServerConfiguration()
            configure(&c)
            do throws(MicroSSEError) {
                try c.validate()
                return nil
            } catch {
                return error.message
            }
        }
        #expect(refusal { $0.jwt = JWTSettings(secret: "short") }?.contains("at least 32 bytes") == true)
        #expect(refusal { $0.jwt = JWTSettings(publicKeyPEM: "nope") }?.hasPrefix("jwt: ") == true)
        #expect(refusal { $0.publicChannels = ["news"] }?.contains("needs jwt") == true)
        #expect(
            refusal {
                $0.jwt = JWTSettings(secret: TokenMint.secret)
                $0.publicChannels = ["a*b"]
            }?.hasPrefix("publicChannels") == true)
        #expect(refusal { $0.jwt = JWTSettings(secret: TokenMint.secret) } == nil)
    }

    @Test("microsse serve --log-level trace: the query token never appears in its output")
    func queryTokenNotLogged() throws {
        let hub = try ServerProcess([
            "serve", "--port", "0", "--log-level", "trace", "--access-log", "--jwt-key", TokenMint.rsa.publicPath,
            "--public-channel", "news",
        ])
        let token = TokenMint.rs256(TokenMint.claims(subscribe: ["user.1.*"], exp: TokenMint.now + 60))
        let forged = TokenMint.hs256(TokenMint.claims(subscribe: ["*"]))
        let c = try EventStreamClient(port: hub.port, path: "/events/user.1.x?authorization=\(token)")
        #expect(c.status == 200)
        let refused = try httpRequest(port: hub.port, path: "/events/user.2.x?a=1&authorization=\(token)")
        #expect(refused.status == 403)
        #expect(try httpRequest(port: hub.port, path: "/events/user.1.x?Authorization=\(forged)").status == 401)
        // A request target libmicrohttpd itself complains about.
        _ = try? httpRequest(
            port: hub.port, path: "/events/x?authorization=\(token)&" + String(repeating: "a", count: 8000))
        c.close()
        hub.signal(SIGTERM)
        #expect(hub.waitForExit() == 0)
        let output = hub.stdout + hub.stderr
        #expect(output.contains("connected"), "trace output: \(output)")
        #expect(output.contains("refused GET /events/user.2.x"))
        for secret in [token, forged, String(token.split(separator: ".")[2])] {
            #expect(!output.contains(secret), "a token in the log")
        }
    }

    @Test("microsse serve refuses --jwt-secret with --jwt-key, and a short secret, with a reason")
    func serveFlags() throws {
        for args in [
            ["--jwt-secret", TokenMint.secret, "--jwt-key", TokenMint.rsa.publicPath], ["--jwt-secret", "short"],
            ["--public-channel", "news"],
        ] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: microsseExecutable())
            p.arguments = ["serve", "--port", "0"] + args
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus != 0, "\(args)")
        }
    }
}
