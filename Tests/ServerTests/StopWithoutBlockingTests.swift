import Dispatch
import MicroSSE
import MicroSSETestSupport
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `stop()` where waiting is not allowed: on libmicrohttpd's own threads (a handler, the
/// authorizer, a disconnect callback: the stop joins them, which aborted the process), and on
/// Swift concurrency's cooperative threads (a cancelled `run()`: the drain held one of the few).
@Suite("Stopping from a callback, and cancelling run(), never wait where they must not")
struct StopWithoutBlockingTests {
    /// Whether the server has released its port (a request to it is refused).
    static func released(_ port: UInt16) -> Bool {
        eventually(timeout: 20) { (try? httpRequest(port: port, path: "/healthz", timeout: 2)) == nil }
    }

    @Test("stop() from a route handler stops the server; the process lives on")
    func stopFromRoute() throws {
        let server = try makeServer()
        defer { server.stop() }
        try server.addRoute("GET", "/shutdown") { [weak server] _ in
            server?.stop()  // returns at once: the stop runs on a thread of its own
            return .text("bye\n")
        }
        let port = server.port
        _ = try? httpRequest(port: port, path: "/shutdown")
        #expect(Self.released(port))
        server.stop()  // waits for the stop under way, if any, then returns
        #expect(server.port == 0, "a stopped server has no port")
    }

    @Test("stop() from the authorizer and from a disconnect callback stops the server")
    func stopFromAuthorizerAndDisconnect() throws {
        let byAuthorizer = try makeServer()
        defer { byAuthorizer.stop() }
        byAuthorizer.setAuthorizer { [weak byAuthorizer] request, _ in
            if request.path == "/events/stop" { byAuthorizer?.stop() }
            return .allow
        }
        let first = byAuthorizer.port
        _ = try? EventStreamClient(port: first, path: "/events/stop", timeout: 5)
        #expect(Self.released(first))

        let byDisconnect = try makeServer()
        defer { byDisconnect.stop() }
        byDisconnect.onDisconnect { [weak byDisconnect] _ in byDisconnect?.stop() }
        let second = byDisconnect.port
        let stream = try EventStreamClient(port: second, path: "/events/news")
        #expect(stream.status == 200)
        stream.close()
        #expect(Self.released(second))
    }

    @Test("cancelling run() returns at once: the drain waits on a thread of its own, then run() returns")
    func cancelDoesNotWaitForTheDrain() async throws {
        var config = ServerConfiguration()
        config.host = "127.0.0.1"
        config.port = 0
        config.shutdownDrainMilliseconds = 20_000
        let server = try Server(validating: config)
        // The disconnect callback holds the drain (the stop waits for every stream's close to be
        // handled) until the test opens the gate: the stop cannot finish before that.
        let gate = DispatchSemaphore(value: 0)
        let inCallback = Flag()
        let gateTimedOut = Flag()
        server.onDisconnect { _ in
            inCallback.set()
            if gate.wait(timeout: .now() + 30) == .timedOut {
                gateTimedOut.set()
            }
        }
        let returned = Flag()
        let task = Task {
            try await server.run()
            returned.set()
        }
        #expect(await pollAsync { server.port != 0 })
        let stream = try EventStreamClient(port: server.port, path: "/events/news")
        #expect(stream.status == 200)
        #expect(await pollAsync { server.statistics.clients == 1 })

        task.cancel()  // runs the cancellation handler here, on this cooperative thread
        // Had the handler waited for the stop, the gate would have timed out by now.
        #expect(!gateTimedOut.isSet, "cancel() waited for the drain")
        // The stop goes on elsewhere: it reaches the disconnect callback and waits there...
        #expect(await pollAsync(timeout: 20) { inCallback.isSet })
        // ...so run() cannot have returned yet.
        #expect(!returned.isSet)
        gate.signal()
        try await task.value
        #expect(returned.isSet)
        #expect(!gateTimedOut.isSet)
        #expect(try stream.waitForEnd(timeout: 10), "the stream ended with its final chunk")
    }

    @Test("more cancelled runs than the cooperative pool has threads: the pool keeps running while they drain")
    func manyCancelledRunsLeaveThePoolFree() async throws {
        // Each cooperative thread a stop held would be one fewer for every task in the process:
        // more held stops than the pool has threads would starve it (the probe below could not run).
        let count = 2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) + 2
        let open = Flag()
        let timedOut = Flag()
        let held = Counter()
        var servers: [Server] = []
        var tasks: [Task<Void, any Error>] = []
        var streams: [EventStreamClient] = []
        for _ in 0..<count {
            var config = ServerConfiguration()
            config.host = "127.0.0.1"
            config.port = 0
            config.shutdownDrainMilliseconds = 20_000
            let server = try Server(validating: config)
            server.onDisconnect { _ in
                // Holds this server's drain until the test opens the gate (at most 10 s).
                held.add()
                let deadline = now() + 10
                while !open.isSet && now() < deadline { usleep(1_000) }
                if !open.isSet { timedOut.set() }
            }
            tasks.append(Task { try await server.run() })
            #expect(await pollAsync { server.port != 0 })
            streams.append(try EventStreamClient(port: server.port, path: "/events/news"))
            servers.append(server)
        }
        for server in servers { #expect(await pollAsync { server.statistics.clients == 1 }) }
        for task in tasks { task.cancel() }
        // Every stop is now held in its drain; the pool must still run new work.
        #expect(await pollAsync(timeout: 20) { held.value == count })
        let probe = Task { open.isSet }
        let ranWhileHeld = await probe.value == false
        #expect(ranWhileHeld && !timedOut.isSet, "the cooperative pool was held by the stops")
        open.set()
        for task in tasks { try await task.value }
        #expect(!timedOut.isSet)
        for stream in streams { #expect(try stream.waitForEnd(timeout: 10)) }
    }

    @Test("shutdown() stops the server and returns once every stream has ended")
    func asyncShutdown() async throws {
        let server = try makeServer()
        let stream = try EventStreamClient(port: server.port, path: "/events/news")
        #expect(stream.status == 200)
        #expect(await pollAsync { server.statistics.clients == 1 })
        let port = server.port
        await server.shutdown()
        #expect(server.statistics.clients == 0)
        #expect(throws: (any Error).self) { try httpRequest(port: port, path: "/healthz", timeout: 2) }
        await server.shutdown()  // again: returns at once
    }
}

/// A flag set once from any thread.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
}

/// A counter incremented from any thread.
final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    func add() { count.add(1, ordering: .sequentiallyConsistent) }
    var value: Int { count.load(ordering: .sequentiallyConsistent) }
}
