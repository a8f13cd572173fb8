import MicroSSE
import MicroSSETestSupport
import MicroSSETransport
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Closed peers are noticed while their stream is idle (suspended), half-closed readers keep
/// their stream, and idle streams' buffer pages go back to the kernel without corrupting what is
/// written after. Heartbeats are off in every test here: nothing but the peer watcher can notice.
@Suite("Peer watcher and idle buffers")
struct PeerWatcherTests {
    /// Whether `count` streams are open and every one is suspended, waiting for events (the
    /// peer watcher then has them all).
    func idle(_ clients: borrowing Mutex<[Client]>, _ count: Int) -> Bool {
        clients.withLock { list in
            list.filter(\.isOpen).count == count && list.filter(\.isOpen).allSatisfy { $0.subscriber.logView.waiting }
        }
    }

    /// Opens 3 streams under `maxClients` 3, ends one client with `end`, and measures how long
    /// until a 4th subscribe is accepted.
    func slotFreed(by end: (RawConnection) -> Void) throws {
        let disconnects = Atomic<Int>(0)
        let server = try makeServer { $0.maxClients = 3 }
        defer { server.stop() }
        server.onDisconnect { _ in disconnects.add(1, ordering: .relaxed) }
        let clients = Mutex<[Client]>([])
        server.onConnect { client in clients.withLock { $0.append(client) } }
        let streams = try (0..<3).map { _ in try EventStreamClient(port: server.port, path: "/events/c") }
        #expect(streams.allSatisfy { $0.status == 200 })
        try #require(eventually { server.statistics.clients == 3 })
        let refused = try EventStreamClient(port: server.port, path: "/events/c")
        #expect(refused.status != 200, "a 4th stream must be refused while 3 are open")
        refused.close()
        // Every stream idle (suspended) before the close.
        #expect(eventually { idle(clients, 3) })

        let closedAt = now()
        end(streams[0].connection)
        var fourth: EventStreamClient?
        while fourth == nil && now() < closedAt + 1 {
            let attempt = try EventStreamClient(port: server.port, path: "/events/c")
            if attempt.status == 200 { fourth = attempt } else { attempt.close() }
            if fourth == nil { usleep(1_000) }
        }
        let elapsed = now() - closedAt
        print("slot reusable \(Int(elapsed * 1_000)) ms after the client closed")
        let stream = try #require(fourth, "no 4th stream within 1 s of the close")
        #expect(elapsed <= 1)
        #expect(disconnects.load(ordering: .relaxed) >= 1)
        #expect(eventually { server.statistics.clients == 3 })
        // The survivors and the newcomer still stream.
        try server.publish("after", to: "c")
        for s in [streams[1], streams[2], stream] { #expect(try s.next()?.data == "after") }
    }

    @Test("a client that closes an idle stream frees its slot at once")
    func closedClientFreesSlot() throws {
        try slotFreed { $0.close() }
    }

    @Test("a client that resets an idle stream frees its slot at once")
    func resetClientFreesSlot() throws {
        try slotFreed { $0.reset() }
    }

    @Test("a half-closed client (shutdown SHUT_WR) keeps receiving")
    func halfClosedKeepsReceiving() throws {
        let server = try makeServer()
        defer { server.stop() }
        let clients = Mutex<[Client]>([])
        server.onConnect { client in clients.withLock { $0.append(client) } }
        let stream = try EventStreamClient(port: server.port, path: "/events/h")
        try #require(eventually { server.statistics.clients == 1 })
        #expect(eventually { idle(clients, 1) })
        let comments = stream.comments.count
        #expect(shutdown(stream.connection.fd, Int32(SHUT_WR)) == 0)
        // The probe (an empty comment) the half-close makes the server write: the stream was
        // still open to write it.
        #expect(try stream.waitForComments(comments + 1), "no probe after the half-close")
        #expect(server.statistics.clients == 1)
        for i in 0..<3 {
            try server.publish("half \(i)", to: "h")
            #expect(try stream.next()?.data == "half \(i)")
            #expect(eventually { idle(clients, 1) })  // idle again, so the watcher has it
        }
        #expect(server.statistics.clients == 1)
        // A full close after the half-close is noticed on the next write.
        stream.close()
        try server.publish("gone", to: "h")
        #expect(eventually(timeout: 2) { server.statistics.clients == 0 })
    }

    @Test("streams resumed after their idle buffer was given back deliver every byte exactly")
    func releasedBuffersDeliverExactly() throws {
        let server = try makeServer { $0.clientBufferBytes = 1 << 20 }
        defer { server.stop() }
        let count = 200
        let streams = try (0..<count).map { _ in try EventStreamClient(port: server.port, path: "/events/idle") }
        try #require(eventually { server.statistics.clients == count })
        let transport = try #require(server.transport)
        let before = transport.releasedIdleBuffers
        // Two release passes see every stream suspended (one marks, the next releases). The
        // counters are this server's: no test running alongside adds to them.
        func released() -> Int { transport.releasedIdleBuffers.regions - before.regions }
        #expect(eventually(timeout: 10) { released() >= count }, "regions given back: \(released())")
        let after = transport.releasedIdleBuffers
        print(
            "idle buffers given back: \(after.regions - before.regions) regions, "
                + "\((after.bytes - before.bytes) / 1_024) KiB for \(count) streams")

        let sizes = [1, 100, 4_095, 4_096, 4_097, 9_000, 31_000, 40_000, 70_000]
        for (i, size) in sizes.enumerated() {
            // Printable bytes that change every position, so zeroed or stale pages would show.
            let payload = String((0..<size).map { Character(UnicodeScalar(UInt8(33 + ($0 * 7 + i) % 90))) })
            try server.publish(payload, to: "idle")
            for (n, stream) in streams.enumerated() {
                let event = try #require(try stream.next(timeout: 10), "stream \(n) missed event \(i)")
                #expect(event.data == payload, "stream \(n), event \(i) of \(size) bytes differs")
            }
            if i == 4 {
                // Idle again until every stream's buffer was given back a second time.
                let mark = transport.releasedIdleBuffers.regions
                #expect(eventually(timeout: 10) { transport.releasedIdleBuffers.regions - mark >= count })
            }
        }
    }
}
