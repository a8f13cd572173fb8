import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A Redis that goes away in the middle of a write must fail the command, not kill the process:
/// hiredis writes with write(2), and SIGPIPE's default action ends the process.
@Suite("A Redis connection reset mid-write")
struct SigpipeTests {
    @Test(
        "a command on a connection whose socket was shut down (as stop() does to the reader's) throws; the process lives"
    )
    func writeAfterShutdown() throws {
        let redis = try RedisServer()
        let connection = try RedisConnection(url: try RedisURL(redis.url), timeoutMilliseconds: 2_000)
        #expect(try connection.command(["PING"]).text == "PONG")
        // What RedisBroker.shutdown() does to wake its reader: the next write gets EPIPE, and
        // hiredis's write(2) raises SIGPIPE, whose default action would end this test process.
        Glibc.shutdown(connection.fileDescriptor, Int32(SHUT_RDWR))
        #expect(throws: MicroSSEError.self) { try connection.command(["PING"]) }
    }
}
