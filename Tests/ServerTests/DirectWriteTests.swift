import MicroSSE
import MicroSSETestSupport
import MicroSSETransport
import MicroSSEWire
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Events for a suspended HTTP/1.1 stream of one channel are written to its socket by the
/// transport's writer thread, without resuming the connection; whatever that path cannot take
/// goes through the content reader, and the stream stays byte-exact either way.
@Suite("Events written while suspended", .serialized)
struct DirectWriteTests {
    /// Events `server` wrote directly: its own count, which no test running alongside adds to.
    func direct(_ server: Server) -> Int { server.transport?.eventsWrittenDirectly.load(ordering: .relaxed) ?? -1 }

    /// Whether the only stream of `clients` is suspended, waiting for events (a publish then
    /// finds it so, and its events are written directly).
    func suspended(_ clients: borrowing Mutex<[Client]>) -> Bool {
        clients.withLock { $0.first?.subscriber.logView.waiting ?? false }
    }

    @Test("events to an idle stream go straight to its socket, in order with a client's own events")
    func idleStreamEvents() throws {
        let server = try makeServer()
        defer { server.stop() }
        let clients = Mutex<[Client]>([])
        server.onConnect { client in clients.withLock { $0.append(client) } }
        let stream = try EventStreamClient(port: server.port, path: "/events/direct")
        #expect(eventually { server.statistics.clients == 1 })
        let before = direct(server)
        var expected: [String] = []
        for i in 0..<50 {
            #expect(eventually { suspended(clients) })
            try server.publish("event \(i)", to: "direct")
            expected.append("event \(i)")
            if i % 10 == 9 {
                // A frame for this stream alone keeps its place after the channel's events.
                _ = try clients.withLock { $0 }.first?.send(Event(data: "private \(i)"))
                expected.append("private \(i)")
            }
            // One at a time, so each finds the stream suspended again.
            #expect(try stream.next()?.data == expected[expected.count - (i % 10 == 9 ? 2 : 1)])
            if i % 10 == 9 { #expect(try stream.next()?.data == expected.last) }
        }
        #expect(
            eventually(timeout: 2) { direct(server) - before >= 25 }, "written directly: \(direct(server) - before)")
        #expect(!stream.brokenOff)
    }

    @Test("a reader that stops reading fills its socket; then it reads every event, exactly once, framed right")
    func fullSocketThenCatchUp() throws {
        let server = try makeServer { $0.clientBufferBytes = 64 << 20 }
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/full", receiveBuffer: 4_096)
        #expect(eventually { server.statistics.clients == 1 })
        let payload = String(repeating: "x", count: 3_000)
        let count = 3_000
        // Each publish waits for its write: the socket fills while the client reads nothing,
        // and later chunks are cut short or go through the content reader.
        for i in 0..<count {
            try server.publish("\(i) \(payload)", to: "full")
        }
        var seen = 0
        let deadline = now() + 30
        while seen < count && now() < deadline {
            guard let event = try stream.next(timeout: max(0.1, deadline - now())) else { break }
            #expect(event.data == "\(seen) \(payload)")
            seen += 1
        }
        #expect(seen == count)
        #expect(!stream.brokenOff)
        // The stream goes on normally afterwards.
        try server.publish("after", to: "full")
        #expect(try stream.next()?.data == "after")
    }

    @Test("an HTTP/1.1 stream asked with Connection: close is still chunked, so direct chunks frame it right")
    func connectionCloseStillChunked() throws {
        let server = try makeServer()
        defer { server.stop() }
        let clients = Mutex<[Client]>([])
        server.onConnect { client in clients.withLock { $0.append(client) } }
        let stream = try EventStreamClient(
            port: server.port, path: "/events/closing", headers: [("Connection", "close")])
        #expect(stream.head.header("Transfer-Encoding")?.lowercased() == "chunked")
        #expect(eventually { server.statistics.clients == 1 })
        let before = direct(server)
        for i in 0..<5 {
            #expect(eventually { suspended(clients) })
            try server.publish("close \(i)", to: "closing")
            #expect(try stream.next()?.data == "close \(i)")
        }
        #expect(eventually(timeout: 2) { direct(server) - before >= 3 })
    }

    @Test("an HTTP/1.0 stream is never written directly: its events come through the content reader")
    func http10NotDirect() throws {
        let server = try makeServer()
        defer { server.stop() }
        let stream = try EventStreamClient(port: server.port, path: "/events/old", http10: true)
        #expect(eventually { server.statistics.clients == 1 })
        for i in 0..<5 {
            try server.publish("old \(i)", to: "old")
            #expect(try stream.next()?.data == "old \(i)")
        }
    }
}

/// Sets `SO_SNDBUF` on the in-process server's listening socket (found among this process's
/// descriptors by its port): connections it accepts inherit it. A small send buffer makes a
/// socket fill up within a few events, so the kernel cuts direct chunks short.
func shrinkSendBuffer(ofListenerOn port: UInt16, to bytes: Int32) -> Bool {
    guard let dir = opendir("/proc/self/fd") else { return false }
    defer { closedir(dir) }
    var found = false
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let fd = Int32(name) else { continue }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        var listening: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard named == 0, address.sin_family == sa_family_t(AF_INET), UInt16(bigEndian: address.sin_port) == port,
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0, listening == 1
        else { continue }
        var value = bytes
        found = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, socklen_t(MemoryLayout<Int32>.size)) == 0
    }
    return found
}

extension DirectWriteTests {
    /// The only stream of `server`, on a socket made small at both ends (a 4 KiB send buffer,
    /// a 4 KiB receive window): it fills within a few events.
    func crampedStream(_ server: Server, path: String) throws -> EventStreamClient {
        #expect(shrinkSendBuffer(ofListenerOn: server.port, to: 4_096))
        let stream = try EventStreamClient(port: server.port, path: path, receiveBuffer: 4_096)
        #expect(eventually { server.statistics.clients == 1 })
        return stream
    }

    @Test("chunks cut short by a full socket are finished when it drains: the stream stays byte-exact")
    func chunksCutShortOverASocket() throws {
        let server = try makeServer { $0.clientBufferBytes = 64 << 20 }
        defer { server.stop() }
        let stream = try crampedStream(server, path: "/events/cut")
        let cutBefore = (server.transport?.chunksCutShort.load(ordering: .relaxed) ?? -1)
        func cut() -> Int { (server.transport?.chunksCutShort.load(ordering: .relaxed) ?? -1) - cutBefore }
        let payload = String(repeating: "z", count: 1_000)
        var published = 0
        var read = 0
        // Rounds: the client reads nothing while events are published one at a time, each
        // written directly with the socket holding all the previous ones, until the kernel
        // cuts one short (a write into a full socket either takes part of the chunk or nothing;
        // which one depends on how its buffers are laid out). A write that takes nothing hands
        // the stream to libmicrohttpd: the round ends, the client reads everything (byte-exact,
        // in order), and the next round starts from an empty socket.
        for _ in 0..<50 where cut() == 0 {
            while published - read < 400 && cut() == 0 {
                let written = direct(server)
                try server.publish("\(published) \(payload)", to: "cut")
                published += 1
                let wrote = eventually(timeout: 0.5) { direct(server) > written }
                if !wrote { break }
            }
            while read < published {
                let event = try stream.next(timeout: 10)
                #expect(event?.data == "\(read) \(payload)")
                if event == nil { return }
                read += 1
            }
        }
        #expect(cut() > 0, "no chunk was cut short in \(published) events")
        #expect(!stream.brokenOff)
        try server.publish("after", to: "cut")
        #expect(try stream.next()?.data == "after")
    }
}

extension DirectWriteTests {
    /// Event `i` of the big-event tests: big ones (over the content reader's direct-write size)
    /// with a small one every third, each with its own letter.
    func bigEventText(_ i: Int) -> String {
        let size = i % 3 == 2 ? 100 : 9_000 + i * 500
        return "\(i) " + String(repeating: Character(Unicode.Scalar(UInt8(97 + i % 26))), count: size)
    }

    /// Reads `count` events of ``bigEventText(_:)`` and returns how many came as expected.
    func readBigEvents(_ stream: EventStreamClient, count: Int) throws -> Int {
        var matching = 0
        for i in 0..<count {
            guard let event = try stream.next(timeout: 10) else { break }
            if event.data == bigEventText(i) { matching += 1 }
        }
        return matching
    }

    @Test("big events go from the channel log straight to the socket, byte-exact and in order with small ones")
    func bigEventsFromTheLog() throws {
        let server = try makeServer()
        defer { server.stop() }
        let clients = Mutex<[Client]>([])
        server.onConnect { client in clients.withLock { $0.append(client) } }
        let stream = try EventStreamClient(port: server.port, path: "/events/big")
        #expect(eventually { server.statistics.clients == 1 })
        #expect(eventually { suspended(clients) })
        let before = direct(server)
        let count = 60
        for i in 0..<count { try server.publish(bigEventText(i), to: "big") }
        #expect(try readBigEvents(stream, count: count) == count)
        // The first finds the stream idle and goes straight to the socket; how many of the burst
        // follow it directly depends on how fast the client reads (this server's own count: on
        // a loaded machine about half, sometimes fewer).
        #expect(direct(server) - before >= 1, "written directly: \(direct(server) - before)")
        #expect(!stream.brokenOff)
        try server.publish("after", to: "big")
        #expect(try stream.next()?.data == "after")
    }

    @Test("a big event cut short by a full socket in the content reader is finished first, then the stream reads on")
    func bigEventsCutShort() throws {
        let server = try makeServer { $0.clientBufferBytes = 64 << 20 }
        defer { server.stop() }
        let stream = try crampedStream(server, path: "/events/bigcut")
        try server.publish("hello", to: "bigcut")
        #expect(try stream.next()?.data == "hello")
        // The stream is idle and its socket empty: an event larger than the most the kernel
        // takes into a socket at once (64 KiB on loopback) is cut short, whatever the timing.
        let cutBefore = (server.transport?.chunksCutShort.load(ordering: .relaxed) ?? -1)
        let huge = String(repeating: "h", count: 200_000)
        try server.publish(huge, to: "bigcut")
        #expect(eventually { (server.transport?.chunksCutShort.load(ordering: .relaxed) ?? -1) > cutBefore })
        // Published while the rest is unsent and the client reads nothing.
        let count = 30
        for i in 0..<count { try server.publish(bigEventText(i), to: "bigcut") }
        #expect(try stream.next(timeout: 10)?.data == huge)
        #expect(try readBigEvents(stream, count: count) == count)
        #expect(!stream.brokenOff)
        try server.publish("after", to: "bigcut")
        #expect(try stream.next()?.data == "after")
    }
}
