import Foundation
import MicroSSE
import MicroSSEMercure
import MicroSSERedis
import MicroSSETestSupport
import Testing

@Suite("Mercure draft-07 (--mercure-legacy)")
struct LegacyTests {
    @Test("topic= subscribers and a mercure-claim publisher token without typ, iss or aud")
    func publishSubscribe() throws {
        let hub = try mercureHub(legacy: true)
        defer { hub.stop() }
        let s = try subscribe(hub, [("topic", "https://example.com/books/1")])
        defer { s.close() }
        let all = try subscribe(hub, [("topic", "*")])
        defer { all.close() }
        #expect(s.status == 200 && all.status == 200)
        let r = try publish(
            hub, [("topic", "https://example.com/books/1"), ("data", "{\"title\":\"x\"}")],
            token: token07(publish: ["*"]))
        #expect(r.status == 200, "\(r.text)")
        #expect(isUUIDv4URN(r.text))
        #expect(try s.next()?.id == r.text)
        #expect(try all.next()?.data == "{\"title\":\"x\"}")
    }

    @Test("draft-08's forms are refused: match= is not a selector, an at+jwt token is not a draft-07 one")
    func notDraft08() throws {
        let hub = try mercureHub(legacy: true)
        defer { hub.stop() }
        #expect(try subscribeRefused(hub, [("match", "t")]).status == 400)
        let r = try publish(hub, [("topic", "t")], token: token08(publish: ["*"]))
        #expect(r.status == 401)
        #expect(r.header("WWW-Authenticate") == #"Bearer error="invalid_token""#)
        // A draft-07 publisher needs its selectors to cover every topic.
        let narrow = try publish(hub, [("topic", "t"), ("topic", "u")], token: token07(publish: ["t"]))
        #expect(narrow.status == 403)
    }

    @Test("private updates by the mercureAuthorization cookie and the authorization query parameter")
    func privateLegacy() throws {
        let hub = try mercureHub(legacy: true)
        defer { hub.stop() }
        let anonymous = try subscribe(hub, [("topic", "t")])
        defer { anonymous.close() }
        let cookie = try subscribe(
            hub, [("topic", "t")], headers: [("Cookie", "mercureAuthorization=\(token07(subscribe: ["t"]))")])
        defer { cookie.close() }
        let query = try subscribe(hub, [("topic", "t"), ("authorization", token07(subscribe: ["*"]))])
        defer { query.close() }
        // A draft-08 cookie name means nothing to a draft-07 hub.
        let wrongCookie = try subscribe(
            hub, [("topic", "t")], headers: [("Cookie", "__Secure-mercure_access_token=\(token07(subscribe: ["t"]))")])
        defer { wrongCookie.close() }
        let token = token07(publish: ["*"])
        let secret = try publish(hub, [("topic", "t"), ("private", "on"), ("data", "secret")], token: token)
        let open = try publish(hub, [("topic", "t"), ("data", "public")], token: token)
        #expect(try anonymous.next()?.id == open.text)
        #expect(try wrongCookie.next()?.id == open.text)
        #expect(try cookie.events(2).map(\.id) == [secret.text, open.text])
        #expect(try query.events(2).map(\.id) == [secret.text, open.text])
    }

    @Test("lastEventID and the Last-Event-ID response header")
    func resumeLegacy() throws {
        let hub = try mercureHub(legacy: true) { $0.corsOrigins = ["https://app.example"] }
        defer { hub.stop() }
        let token = token07(publish: ["*"])
        let ids = try (0..<3).map { _ in try publish(hub, [("topic", "t")], token: token).text }
        let s = try subscribe(
            hub, [("topic", "t"), ("lastEventID", ids[0])], headers: [("Origin", "https://app.example")])
        defer { s.close() }
        #expect(s.head.header("Last-Event-ID") == ids[0])
        #expect(s.head.header("Mercure-Last-Event-ID") == nil)
        #expect(s.head.header("Access-Control-Expose-Headers")?.contains("Last-Event-ID") == true)
        #expect(try s.events(2).map(\.id) == [ids[1], ids[2]])
    }

    @Test("URI template selectors: {var} stays within a segment, {+var} crosses them, {#var}; once per stream")
    func templates() throws {
        let hub = try mercureHub(legacy: true)
        defer { hub.stop() }
        let books = try subscribe(hub, [("topic", "https://example.com/books/{id}")])
        defer { books.close() }
        let deep = try subscribe(
            hub, [("topic", "https://example.com/{+path}"), ("topic", "https://example.com/books/{id}")])
        defer { deep.close() }
        let fragment = try subscribe(hub, [("topic", "https://example.com/a{#f}")])
        defer { fragment.close() }
        let token = token07(publish: ["*"])
        let nested = try publish(hub, [("topic", "https://example.com/books/1/reviews/2")], token: token)
        let other = try publish(hub, [("topic", "https://other.example/books/1")], token: token)
        let a = try publish(hub, [("topic", "https://example.com/a#x/y")], token: token)
        let book = try publish(hub, [("topic", "https://example.com/books/caf%C3%A9-1")], token: token)
        #expect(nested.status == 200 && other.status == 200)
        #expect(try books.next()?.id == book.text)
        #expect(try deep.events(3).map(\.id) == [nested.text, a.text, book.text])
        #expect(try fragment.next()?.id == a.text)
        for unsupported in [
            "https://example.com/{/id}", "https://example.com/{a,b}", "https://example.com/{id*}", "x{",
        ] {
            let r = try subscribeRefused(hub, [("topic", unsupported)])
            #expect(r.status == 400, "\(unsupported): \(r.status) \(r.text)")
        }
        let many = String(repeating: "{a}", count: 17)
        #expect(try subscribeRefused(hub, [("topic", many)]).status == 400)
    }

    @Test("a template in the token's subscribe list grants private updates of the topics it matches")
    func templateGrant() throws {
        let hub = try mercureHub(legacy: true)
        defer { hub.stop() }
        let token = token07(subscribe: ["https://example.com/users/42/{+rest}"])
        let s = try subscribe(hub, [("topic", "*")], headers: [("Authorization", "Bearer \(token)")])
        defer { s.close() }
        let publisher = token07(publish: ["*"])
        let other = try publish(
            hub, [("topic", "https://example.com/users/7/inbox"), ("private", "on")], token: publisher)
        let mine = try publish(
            hub, [("topic", "https://example.com/users/42/inbox"), ("private", "on")], token: publisher)
        #expect(other.status == 200)
        #expect(try s.next()?.id == mine.text)
    }
}

@Suite("Mercure configuration")
struct ConfigurationTests {
    @Test(
        "validate(): Mercure needs jwt; draft-08 needs an issuer and an audience; with redis and subscriptions it validates"
    )
    func validation() throws {
        var config = ServerConfiguration()
        config.mercure = MercureSettings(enabled: true, issuers: [issuer], audience: audience)
        #expect(throws: MicroSSEError.self) { try config.validate() }
        config.jwt = JWTSettings(secret: TokenMint.secret)
        try config.validate()
        config.mercure.issuers = []
        #expect(throws: MicroSSEError.self) { try config.validate() }
        config.mercure.issuers = [issuer]
        config.mercure.audience = nil
        #expect(throws: MicroSSEError.self) { try config.validate() }
        config.mercure.audience = "https://hub.example/a b"  // it goes into a header parameter
        #expect(throws: MicroSSEError.self) { try config.validate() }
        config.mercure.audience = nil
        config.mercure.legacy = true
        try config.validate()
        config.mercure.subscriptions = true  // active subscriptions, clustered with redis
        config.redis = try RedisURL("redis://127.0.0.1:6379")
        try config.validate()
        config.mercure = MercureSettings()
        try config.validate()
    }

    @Test("without ServerConfiguration.mercure, /.well-known/mercure is not served")
    func offByDefault() throws {
        let hub = try makeServer { $0.jwt = JWTSettings(secret: TokenMint.secret) }
        defer { hub.stop() }
        #expect(try subscribeRefused(hub, [("match", "t")]).status == 404)
    }

    @Test("microsse serve --mercure: the flags reach the hub, and a flag without --mercure is refused")
    func serveFlags() throws {
        let server = try ServerProcess([
            "serve", "--port", "0", "--jwt-secret", TokenMint.secret, "--mercure", "--mercure-issuer", issuer,
            "--mercure-audience", audience,
        ])
        defer { server.signal(SIGTERM) }
        let r = try httpRequest(
            port: server.port, method: "POST", path: "/.well-known/mercure",
            headers: [
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", "Bearer \(token08(publish: ["*"]))"),
            ], body: Array("topic=t&data=x".utf8))
        #expect(r.status == 200 && isUUIDv4URN(r.text))
        #expect(server.stdout.contains("/.well-known/mercure"))
        let refused = try runToExit(["serve", "--port", "0", "--mercure-legacy"])
        #expect(refused.status != 0 && refused.stderr.contains("need --mercure"))
        let noJWT = try runToExit(["serve", "--port", "0", "--mercure", "--mercure-legacy"])
        #expect(noJWT.status != 0 && noJWT.stderr.contains("mercure needs jwt"))
    }
}
