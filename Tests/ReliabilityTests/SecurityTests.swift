import MicroSSE
import MicroSSETestSupport
import Synchronization
import Testing

/// The publish token and the authorizer cannot be got round.
@Suite("Publish token and authorizer cannot be bypassed")
struct SecurityTests {
    static let token = "s3cret-Token_0123456789"

    @Test("every wrong token, of every length, gets 401 and publishes nothing")
    func wrongTokens() throws {
        let server = try makeServer {
            $0.publishing = true
            $0.publishToken = Self.token
        }
        defer { server.stop() }
        let port = server.port
        var wrong: [String] = []
        let t = Array(Self.token)
        for n in 0...(t.count + 3) {
            // Prefixes, the token with bytes added, and every length of a same-length mismatch.
            if n < t.count { wrong.append(String(t[0..<n])) }
            if n > t.count { wrong.append(Self.token + String(repeating: "x", count: n - t.count)) }
            if n > 0 && n <= t.count {
                var flipped = t
                flipped[n - 1] = flipped[n - 1] == "A" ? "B" : "A"
                wrong.append(String(flipped))
            }
        }
        wrong += [Self.token.uppercased(), "\u{0}" + Self.token]
        for candidate in wrong {
            let r = try httpRequest(
                port: port, method: "POST", path: "/events/t", headers: [("Authorization", "Bearer \(candidate)")],
                body: Array("x".utf8))
            // A NUL in a header breaks HTTP's framing rules: refused as a bad request instead.
            let expected = candidate.utf8.contains(0) ? 400 : 401
            #expect(r.status == expected, "token '\(candidate)' gave \(r.status)")
        }
        for header in ["Basic \(Self.token)", Self.token, "Bearer", "Bearer\(Self.token)", "Token \(Self.token)"] {
            let r = try httpRequest(
                port: port, method: "POST", path: "/events/t", headers: [("Authorization", header)],
                body: Array("x".utf8))
            #expect(r.status == 401, "Authorization '\(header)' gave \(r.status)")
        }
        let none = try httpRequest(port: port, method: "POST", path: "/events/t", body: Array("x".utf8))
        #expect(none.status == 401)
        #expect(none.header("WWW-Authenticate") == "Bearer")
        #expect(server.statistics.published == 0)
        // RFC 9110 allows one or more spaces after the scheme, and any case for it: the same token
        // is read from every spelling, as the JWT guard reads it (one parser for both).
        for header in ["Bearer \(Self.token)", "bearer \(Self.token)", "Bearer   \(Self.token)"] {
            let right = try httpRequest(
                port: port, method: "POST", path: "/events/t", headers: [("Authorization", header)],
                body: Array("x".utf8))
            #expect(right.status == 202, "Authorization '\(header)' gave \(right.status)")
        }
        #expect(server.statistics.published == 3)
    }

    @Test("a second Authorization header cannot replace a wrong first one")
    func duplicateAuthorization() throws {
        let server = try makeServer {
            $0.publishing = true
            $0.publishToken = Self.token
        }
        defer { server.stop() }
        let r = try httpRequest(
            port: server.port, method: "POST", path: "/events/t",
            headers: [("Authorization", "Bearer wrong"), ("Authorization", "Bearer \(Self.token)")],
            body: Array("x".utf8))
        #expect(r.status == 401 || r.status == 400)
        #expect(server.statistics.published == 0)
    }

    /// An authorizer that lets only channel `public` through and records every decision.
    final class Recorder: Sendable {
        let seen = Mutex<[Access]>([])
        func decide(_ access: Access) -> Authorization {
            seen.withLock { $0.append(access) }
            switch access {
            case .subscribe(let channels): return channels.allSatisfy { $0 == "public" } ? .allow : .forbidden
            case .publish(let channel): return channel == "public" ? .allow : .forbidden
            case .stream, .route: return .forbidden
            }
        }
        func take() -> [Access] {
            seen.withLock { list in
                let out = list
                list = []
                return out
            }
        }
    }

    static let trickPaths = [
        "/events/../secret", "/events/%2e%2e/secret", "/events/%2E%2E/secret", "//events/secret", "/events//secret",
        "/events/./secret", "/events/public/../secret", "/events/public/%2e%2e/secret", "/events/public%2f..%2fsecret",
        "/events/%73ecret", "/events/secret%00public", "/events/secret/", "/events/secret%20", "/EVENTS/secret",
        "/Events/secret", "/events/secret?channel=public", "/events?channel=secret",
        "/events?channel=public&channel=secret",
        "/events?channel=public&channel=%73ecret", "/events?channel=public%26channel%3Dsecret", "/events/secret#public",
        "/events/sec%72et", "/events%2fsecret", "/events%2Fsecret", "/./events/secret", "/events/secret;public",
        "/events/%2573ecret", "/events/\u{73}ecret", "/events\\secret", "/events/secret\\..\\public",
    ]

    @Test("path tricks either reach the authorizer with the channel they stream, or get 4xx")
    func pathTricksSubscribe() throws {
        let server = try makeServer()
        defer { server.stop() }
        let recorder = Recorder()
        server.setAuthorizer { _, access in recorder.decide(access) }
        let port = server.port
        // The control: the allowed channel streams (kept open: a closed client's stream is
        // gone at once), the forbidden one is refused.
        let control = try EventStreamClient(port: port, path: "/events/public")
        #expect(control.status == 200)
        #expect(recorder.take() == [.subscribe(channels: ["public"])])
        #expect(try httpRequest(port: port, path: "/events/secret").status == 403)
        #expect(recorder.take() == [.subscribe(channels: ["secret"])])
        for path in Self.trickPaths {
            let status = try rawStatus(
                port: port, "GET \(path) HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n")
            let decisions = recorder.take()
            let s = try #require(status, "\(path): no response")
            #expect((400..<500).contains(s), "\(path) gave \(s); authorizer saw \(decisions)")
            for d in decisions {
                if case .subscribe(let channels) = d {
                    #expect(channels.contains("secret") || channels.contains { $0 != "public" }, "\(path): \(d)")
                }
            }
        }
        #expect(server.statistics.clients == 1)
        withExtendedLifetime(control) {}
    }

    @Test("a stream opened through a path trick never carries a channel the authorizer did not see")
    func pathTricksStreamOnlyAuthorizedChannels() throws {
        let server = try makeServer()
        defer { server.stop() }
        let recorder = Recorder()
        // Allow everything but record it, then check each stream carries exactly what was allowed.
        server.setAuthorizer { _, access in
            _ = recorder.decide(access)
            return .allow
        }
        let port = server.port
        for path in Self.trickPaths + ["/events/public", "/events/%70ublic"] {
            guard let stream = try? EventStreamClient(port: port, path: path, timeout: 2) else { continue }
            defer { stream.close() }
            let decisions = recorder.take()
            guard stream.status == 200 else { continue }
            guard case .subscribe(let channels)? = decisions.last, decisions.count == 1 else {
                Issue.record("\(path) streamed without one subscribe decision: \(decisions)")
                continue
            }
            try #require(eventually { server.statistics.clients >= 1 })
            for name in ["public", "secret", "x"] { try server.publish("to \(name)", to: name) }
            let got = try stream.events(channels.filter { ["public", "secret", "x"].contains($0) }.count, timeout: 2)
            #expect(
                Set(got.map(\.data))
                    == Set(channels.filter { ["public", "secret", "x"].contains($0) }.map { "to \($0)" }),
                "\(path)")
            #expect(try stream.next(timeout: 0.1) == nil, "\(path) carried an event of a channel not authorized")
        }
    }

    @Test("publish path tricks reach the authorizer with the channel they publish to, or get 4xx")
    func pathTricksPublish() throws {
        let server = try makeServer { $0.publishing = true }
        defer { server.stop() }
        let recorder = Recorder()
        server.setAuthorizer { _, access in recorder.decide(access) }
        let port = server.port
        for path in Self.trickPaths where !path.contains("?") {
            let r = try httpRequest(port: port, method: "POST", path: path, body: Array("x".utf8))
            let decisions = recorder.take()
            #expect((400..<500).contains(r.status), "POST \(path) gave \(r.status); authorizer saw \(decisions)")
        }
        #expect(server.statistics.published == 0)
        #expect(
            try httpRequest(port: port, method: "POST", path: "/events/public", body: Array("x".utf8)).status == 202)
    }

    @Test("custom routes and stream routes match exactly; near misses do not skip the authorizer")
    func customRouteTricks() throws {
        let server = try makeServer()
        defer { server.stop() }
        let recorder = Recorder()
        server.setAuthorizer { _, access in recorder.decide(access) }
        try server.addRoute("GET", "/admin") { _ in .text("admin page") }
        try server.addStreamRoute("/talk") { _, client in _ = try? client.send(Event(data: "private")) }
        for path in [
            "/admin", "/admin/", "//admin", "/ADMIN", "/x/../admin", "/%61dmin", "/admin%00x", "/admin?x=1", "/./admin",
            "/talk", "/talk/", "//talk", "/%74alk", "/talk%00", "/TALK",
        ] {
            let status = try rawStatus(
                port: server.port,
                "GET \(path) HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n")
            let s = try #require(status, "\(path): no response")
            #expect((400..<500).contains(s), "\(path) gave \(s)")
        }
    }

    @Test(
        "a publisher cannot send MicroSSE's own control events (gap, expired): 400 over HTTP, a thrown error in Swift")
    func controlEventNamesReserved() throws {
        let server = try makeServer { $0.publishing = true }
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/news")
        for name in ["microsse.gap", "microsse.expired"] {
            let answer = try postEvent(port: server.port, channel: "news", data: "{}", query: "event=\(name)")
            #expect(answer.status == 400)
            #expect(answer.text.contains("reserved"))
            #expect(throws: MicroSSEError.self) { try server.publish("{}", event: name, to: "news") }
        }
        #expect(
            try postEvent(port: server.port, channel: "news", data: "ok", query: "event=microsse.other").status == 202)
        #expect(server.statistics.published == 1)
        let first = try #require(try stream.next())
        #expect(first.data == "ok" && first.type == "microsse.other", "nothing reserved reached the stream")
    }
}
