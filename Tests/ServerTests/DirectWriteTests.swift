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
    func direct() -> Int { HTTPTransport.eventsWrittenDirectly.load(ordering: .relaxed) }

    @Test("events to an idle stream go straight to its socket, in order with a client's own events")
    func idleStreamEvents() throws {
        let server = try makeServer()
        defer { server.stop() }
        let clients = Mutex<[Client]>([])
        server.onConnect { client in clients.withLock { $0.append(client) } }
        let stream = try EventStreamClient(port: server.port, path: "/events/direct")
        #expect(eventually { server.statistics.clients == 1 })
        let before = direct()
        var expected: [String] = []
        for i in 0..<50 {
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
        #expect(eventually(timeout: 2) { direct() - before >= 25 }, "written directly: \(direct() - before)")
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
        let stream = try EventStreamClient(
            port: server.port, path: "/events/closing", headers: [("Connection", "close")])
        #expect(stream.head.header("Transfer-Encoding")?.lowercased() == "chunked")
        #expect(eventually { server.statistics.clients == 1 })
        let before = direct()
        for i in 0..<5 {
            try server.publish("close \(i)", to: "closing")
            #expect(try stream.next()?.data == "close \(i)")
        }
        #expect(eventually(timeout: 2) { direct() - before >= 3 })
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
    @Test("chunks cut short by a full socket are finished when it drains: the stream stays byte-exact")
    func chunksCutShortOverASocket() throws {
        let server = try makeServer { $0.clientBufferBytes = 64 << 20 }
        defer { server.stop() }
        #expect(shrinkSendBuffer(ofListenerOn: server.port, to: 4_096))
        let stream = try EventStreamClient(port: server.port, path: "/events/cut", receiveBuffer: 4_096)
        #expect(eventually { server.statistics.clients == 1 })
        let cutBefore = HTTPTransport.chunksCutShort.load(ordering: .relaxed)
        let payload = String(repeating: "z", count: 1_000)
        var published = 0
        // One event at a time, each written directly (the client reads nothing meanwhile), until
        // the kernel cuts one short: each starts with the socket holding all the previous ones.
        func cut() -> Int { HTTPTransport.chunksCutShort.load(ordering: .relaxed) - cutBefore }
        var missed = 0
        while published < 400 && cut() == 0 && missed < 3 {
            let direct = HTTPTransport.eventsWrittenDirectly.load(ordering: .relaxed)
            try server.publish("\(published) \(payload)", to: "cut")
            published += 1
            // Not written directly (the stream was not suspended yet, or its socket was full).
            let wrote = eventually(timeout: 0.5) {
                HTTPTransport.eventsWrittenDirectly.load(ordering: .relaxed) > direct
            }
            missed = wrote ? 0 : missed + 1
        }
        #expect(cut() > 0, "no chunk was cut short after \(published) events")
        for i in 0..<published {
            let event = try stream.next(timeout: 10)
            #expect(event?.data == "\(i) \(payload)")
            if event == nil { break }
        }
        #expect(!stream.brokenOff)
        try server.publish("after", to: "cut")
        #expect(try stream.next()?.data == "after")
    }
}
