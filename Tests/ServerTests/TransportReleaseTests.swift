import MicroSSE
import MicroSSETestSupport
import MicroSSETransport
import Synchronization
import Testing

/// A stopped server lets its transport go: nothing the transport's own threads keep (the streams
/// listed for the peer watcher's release pass, the heartbeat slots) holds it once the server is
/// stopped and released.
@Suite("A stopped server's transport is freed")
struct TransportReleaseTests {
    @Test("idle streams listed for the release pass when the server stops do not keep the transport alive")
    func transportFreedAfterStop() throws {
        weak var transport: HTTPTransport?
        do {
            let server = try makeServer()
            let clients = Mutex<[Client]>([])
            server.onConnect { client in clients.withLock { $0.append(client) } }
            let streams = try (0..<3).map { _ in try EventStreamClient(port: server.port, path: "/events/c") }
            #expect(streams.allSatisfy { $0.status == 200 })
            // Every stream suspended: each is listed for the next release pass.
            #expect(
                eventually {
                    clients.withLock { $0.count == 3 && $0.allSatisfy { $0.subscriber.logView.waiting } }
                })
            transport = server.transport
            #expect(transport != nil)
            server.stop()
            for stream in streams { stream.close() }
            clients.withLock { $0 = [] }
        }
        #expect(eventually { transport == nil }, "the transport is still referenced after the server is gone")
    }
}
