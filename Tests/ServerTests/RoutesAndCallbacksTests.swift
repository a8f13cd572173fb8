import MicroSSE
import MicroSSETestSupport
import Synchronization
import Testing

@Suite("Custom routes, private streams, callbacks, authorizer")
struct RoutesAndCallbacksTests {
    @Test("a plain route serves status, headers and body")
    func plainRoute() throws {
        let server = try makeServer()
        defer { server.stop() }
        try server.addRoute("GET", "/") { _ in
            var r = Response.html("<h1>hi</h1>")
            r.headers.append(("X-Test", "1"))
            return r
        }
        let r = try httpRequest(port: server.port, path: "/")
        #expect(r.status == 200)
        #expect(r.header("Content-Type") == "text/html; charset=utf-8")
        #expect(r.header("X-Test") == "1")
        #expect(r.text == "<h1>hi</h1>")
        #expect(try httpRequest(port: server.port, path: "/missing").status == 404)
        let wrong = try httpRequest(port: server.port, method: "DELETE", path: "/")
        #expect(wrong.status == 405)
        #expect(wrong.header("Allow") == "GET")
    }

    @Test("private sends reach only their own client")
    func privateSends() throws {
        let server = try makeServer()
        defer { server.stop() }
        let clients = Mutex<[String: Client]>([:])
        try server.addStreamRoute("/me") { request, client in
            let name = request.queryValue("name") ?? "?"
            clients.withLock { $0[name] = client }
            _ = try? client.send(Event(data: "hello \(name)"))
        }
        let alice = try EventStreamClient(port: server.port, path: "/me?name=alice")
        let bob = try EventStreamClient(port: server.port, path: "/me?name=bob")
        #expect(try alice.next()?.data == "hello alice")
        #expect(try bob.next()?.data == "hello bob")
        let a = try #require(clients.withLock { $0["alice"] })
        #expect(try a.send(Event(data: "for alice only", id: "7")))
        let got = try #require(try alice.next())
        #expect(got.data == "for alice only")
        #expect(got.lastEventID == "7")
        #expect(try bob.next(timeout: 0.3) == nil)
    }

    @Test("a client that disconnects fires the disconnect callback and frees its stream")
    func disconnectCallback() throws {
        let server = try makeServer()
        defer { server.stop() }
        let connected = Atomic<Int>(0)
        let disconnected = Mutex<[UInt64]>([])
        server.onConnect { _ in connected.add(1, ordering: .relaxed) }
        server.onDisconnect { client in disconnected.withLock { $0.append(client.id) } }
        let stream = try EventStreamClient(port: server.port, path: "/events/d")
        try #require(eventually { server.statistics.clients == 1 })
        let connections = connected.load(ordering: .relaxed)
        #expect(connections == 1)
        stream.connection.reset()
        // A suspended connection's peer is noticed on write: publishing reveals the reset.
        try #require(
            eventually(timeout: 5) {
                _ = try? server.publish("probe", to: "d")
                return server.statistics.clients == 0
            })
        #expect(disconnected.withLock { $0.count } == 1)
        #expect(server.statistics.disconnects == 1)
    }

    @Test("a stream's request keeps its headers, in order and as sent, until its disconnect callback")
    func streamRequestHeaders() throws {
        let server = try makeServer()
        defer { server.stop() }
        let seen = Mutex<Request?>(nil)
        server.onDisconnect { client in seen.withLock { $0 = client.request } }
        let long = String(repeating: "v", count: 300)  // a length over 127 takes two bytes in the list
        let sent = [("X-Long", long), ("X-Twice", "1"), ("x-twice", "2"), ("X-Text", "café ✓"), ("X-Empty", "")]
        let stream = try EventStreamClient(port: server.port, path: "/events/h", headers: sent)
        try #require(eventually { server.statistics.clients == 1 })
        stream.connection.reset()
        try #require(eventually { seen.withLock { $0 != nil } })
        let request = try #require(seen.withLock { $0 })
        let expected = [("Host", "127.0.0.1:\(server.port)"), ("Accept", "text/event-stream")] + sent
        #expect(request.headers.map(\.name) == expected.map(\.0))
        #expect(request.headers.map(\.value) == expected.map(\.1))
        #expect(request.header("x-LONG") == long)
        #expect(request.header("X-TWICE") == "1")
        #expect(request.headerValues("X-TWICE") == ["1", "2"])
        #expect(request.header("X-Empty") == "")
        #expect(request.header("X-Missing") == nil)
    }

    @Test("a request made in code keeps its headers, lengths of every size")
    func requestValueHeaders() {
        let sizes = [0, 1, 127, 128, 16_383, 16_384, 70_000]
        let pairs = sizes.map { ("H\($0)", String(repeating: "x", count: $0)) }
        let request = Request(method: "GET", path: "/", headers: pairs)
        #expect(request.headers.map(\.name) == pairs.map(\.0))
        #expect(request.headers.map(\.value) == pairs.map(\.1))
        #expect(request.header("h16384")?.utf8.count == 16_384)
        #expect(Request(method: "GET", path: "/").headers.isEmpty)
        #expect(Request(method: "GET", path: "/").header("Host") == nil)
    }

    @Test("a peer that closed is reaped by heartbeats without any publish")
    func heartbeatReapsDeadPeer() throws {
        let server = try makeServer { $0.heartbeatSeconds = 1 }
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/idle")
        try #require(eventually { server.statistics.clients == 1 })
        stream.close()
        #expect(eventually(timeout: 6) { server.statistics.clients == 0 })
    }

    @Test("the authorizer refuses with 401 or 403 and no stream byte is sent")
    func authorizerRefuses() throws {
        let server = try makeServer()
        defer { server.stop() }
        let asked = Mutex<[Access]>([])
        server.setAuthorizer { request, access in
            asked.withLock { $0.append(access) }
            switch request.header("Authorization") {
            case "Bearer good": return .allow
            case nil: return .unauthorized
            default: return .forbidden
            }
        }
        let none = try EventStreamClient(port: server.port, path: "/events/secret")
        #expect(none.status == 401)
        #expect(none.head.header("Content-Type") == "text/plain; charset=utf-8")
        let bad = try EventStreamClient(
            port: server.port, path: "/events/secret", headers: [("Authorization", "Bearer nope")])
        #expect(bad.status == 403)
        #expect(server.statistics.clients == 0)
        let good = try EventStreamClient(
            port: server.port, path: "/events/secret", headers: [("Authorization", "Bearer good")])
        #expect(good.status == 200)
        #expect(asked.withLock { $0.first } == .subscribe(channels: ["secret"]))
    }

    @Test("the authorizer guards private stream routes too")
    func authorizerOnStreamRoute() throws {
        let server = try makeServer()
        defer { server.stop() }
        let handlerRan = Atomic<Bool>(false)
        try server.addStreamRoute("/talk") { _, _ in handlerRan.store(true, ordering: .relaxed) }
        server.setAuthorizer { _, access in access == .stream(path: "/talk") ? .forbidden : .allow }
        let s = try EventStreamClient(port: server.port, path: "/talk")
        #expect(s.status == 403)
        let ran = handlerRan.load(ordering: .relaxed)
        #expect(!ran)
    }

    @Test("run() returns after stop()")
    func runReturnsOnStop() async throws {
        var config = ServerConfiguration()
        config.port = 0
        let server = Server(configuration: config)
        async let running: Void = server.run()
        #expect(await pollAsync { server.port != 0 })
        server.stop()
        try await running
    }

    @Test("cancelling the task that runs the server stops it")
    func cancelStops() async throws {
        var config = ServerConfiguration()
        config.port = 0
        let server = Server(configuration: config)
        let task = Task { try await server.run() }
        #expect(await pollAsync { server.port != 0 })
        let port = server.port
        task.cancel()
        try await task.value
        #expect(throws: (any Error).self) { try httpRequest(port: port, path: "/healthz") }
    }
}

/// Polls without blocking the cooperative pool's threads for long.
func pollAsync(timeout: Double = 5, _ condition: () -> Bool) async -> Bool {
    let deadline = now() + timeout
    while now() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}
