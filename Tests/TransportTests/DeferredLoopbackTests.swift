import Dispatch
import MicroSSECore
import Synchronization
import Testing

@testable import MicroSSETransport

#if canImport(Glibc)
    import Glibc
#endif

/// Routes for the loopback tests: `/now` answers at once, `/later` 50 ms later from another
/// thread, `/never` only when the test says so (its replies are kept in `held`).
private final class DeferringDelegate: TransportDelegate {
    let held = Mutex<[DeferredReply]>([])

    func handle(_ request: Request) -> TransportReply {
        switch request.path {
        case "/later":
            let reply = DeferredReply()
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) {
                reply.complete(with: .response(.text("later")))
            }
            return .deferred(reply)
        case "/never":
            let reply = DeferredReply()
            held.withLock { $0.append(reply) }
            return .deferred(reply)
        default:
            return .response(.text("now"))
        }
    }

    func log(_ message: String) {}
}

private func monotonic() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// A loopback connection that sent `GET path`.
private func request(_ port: UInt16, _ path: String) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    try #require(rc == 0)
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let text = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    _ = text.withCString { send(fd, $0, strlen($0), 0) }
    return fd
}

/// The local port of socket `fd`.
private func localPort(of fd: Int32) -> UInt16 {
    var addr = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return UInt16(bigEndian: addr.sin_port)
}

/// Whether the server's socket of the connection from local port `peer` to `port` has received
/// the peer's FIN (state CLOSE_WAIT in /proc/net/tcp: 08).
private func serverSideClosing(port: UInt16, peer: UInt16) -> Bool {
    let fd = open("/proc/net/tcp", O_RDONLY)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        bytes += buffer[..<n]
    }
    func hex(_ p: UInt16) -> String {
        let digits = String(p, radix: 16, uppercase: true)
        return ":" + String(repeating: "0", count: 4 - digits.count) + digits
    }
    let local = hex(port)
    let remote = hex(peer)
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count > 3 else { continue }
        if fields[1].hasSuffix(local) && fields[2].hasSuffix(remote) { return fields[3] == "08" }
    }
    return false
}

/// Reads until the peer closes; returns the status code (0 when none came).
private func status(of fd: Int32) -> Int {
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        bytes += buffer[0..<n]
    }
    let text = String(decoding: bytes, as: UTF8.self)
    guard text.hasPrefix("HTTP/1.1 ") else { return 0 }
    return Int(text.dropFirst(9).prefix(3)) ?? 0
}

private func started(_ delegate: DeferringDelegate) throws -> HTTPTransport {
    let options = TransportOptions(
        host: "127.0.0.1", port: 0, connectionLimit: 64, connectionMemoryLimit: 0, connectionTimeout: 10,
        threadPoolSize: 0, perIPConnectionLimit: 0, maxBodyBytes: 1 << 16, tlsCertificatePEM: nil, tlsKeyPEM: nil,
        drainTimeoutMilliseconds: 2_000, raiseFileLimit: false)
    let transport = HTTPTransport(options: options, delegate: delegate)
    try transport.start()
    return transport
}

private func eventually(_ seconds: Double = 3, _ condition: () -> Bool) -> Bool {
    let deadline = monotonic() + seconds
    while monotonic() < deadline {
        if condition() { return true }
        usleep(2_000)
    }
    return condition()
}

@Suite("Deferred replies over loopback", .serialized)
struct DeferredLoopbackTests {
    @Test("a reply completed 50 ms later from another thread; the polling thread serves others meanwhile")
    func completedLater() throws {
        let delegate = DeferringDelegate()
        let transport = try started(delegate)
        defer { transport.stop() }
        let port = transport.boundPort.load(ordering: .acquiring)
        let begun = monotonic()
        let later = try request(port, "/later")
        #expect(eventually { transport.pendingCount == 1 })
        let quick = monotonic()
        #expect(status(of: try request(port, "/now")) == 200)
        let quickTook = monotonic() - quick
        #expect(status(of: later) == 200)
        let laterTook = monotonic() - begun
        #expect(laterTook >= 0.05)
        #expect(quickTook < 0.05, "answered while /later was pending: \(quickTook) s")
        #expect(eventually { transport.pendingCount == 0 })
    }

    @Test("a client that disconnects before the completion: the completion is harmless, nothing leaks")
    func clientGoneFirst() throws {
        let delegate = DeferringDelegate()
        let transport = try started(delegate)
        defer { transport.stop() }
        let port = transport.boundPort.load(ordering: .acquiring)
        let fd = try request(port, "/never")
        #expect(eventually { transport.pendingCount == 1 })
        let local = localPort(of: fd)
        close(fd)
        // The server's side of the connection has the client's FIN (libmicrohttpd does not
        // watch a paused connection, so only the kernel tells).
        #expect(eventually { serverSideClosing(port: port, peer: local) })
        for reply in delegate.held.withLock({ $0 }) { reply.complete(with: .response(.text("too late"))) }
        #expect(eventually { transport.pendingCount == 0 })
        #expect(status(of: try request(port, "/now")) == 200)
    }

    @Test("stop() with pending requests answers them 503 and stops cleanly")
    func stopWithPending() throws {
        let delegate = DeferringDelegate()
        let transport = try started(delegate)
        let port = transport.boundPort.load(ordering: .acquiring)
        let fds = try (0..<3).map { _ in try request(port, "/never") }
        #expect(eventually { transport.pendingCount == 3 })
        let statuses = Mutex<[Int]>([])
        let readers = DispatchGroup()
        for fd in fds {
            DispatchQueue.global().async(group: readers) {
                let s = status(of: fd)
                statuses.withLock { $0.append(s) }
            }
        }
        let begun = monotonic()
        transport.stop()
        let took = monotonic() - begun
        #expect(readers.wait(timeout: .now() + 3) == .success)
        #expect(statuses.withLock { $0 } == [503, 503, 503])
        #expect(took < 1)
        #expect(transport.pendingCount == 0)
        // A completion after the stop is dropped.
        for reply in delegate.held.withLock({ $0 }) { reply.complete(with: .response(.text("late"))) }
    }
}
