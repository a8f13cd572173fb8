// A small, strict HTTP/1.x client over plain sockets for MicroSSE's tests: it reads exactly what
// the server wrote (status line, headers, chunked or close-delimited body) so tests can assert
// the wire, and feeds stream bodies through the strict SSE parser.
import MicroSSE

#if canImport(Glibc)
    import Glibc
#endif

/// A failure in the test client, with a one-line reason.
public struct TestClientError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Seconds on the monotonic clock.
public func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Polls `condition` every few milliseconds until it holds or `timeout` seconds pass.
/// Returns whether it held. Use instead of fixed sleeps.
@discardableResult
public func eventually(timeout: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = now() + timeout
    while now() < deadline {
        if try condition() { return true }
        usleep(2_000)
    }
    return try condition()
}

/// A status line and headers.
public struct ResponseHead: Sendable {
    public var version: String
    public var status: Int
    public var headers: [(name: String, value: String)]

    /// First value of a header, case-insensitive.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// A complete response.
public struct SimpleResponse: Sendable {
    public var head: ResponseHead
    public var body: [UInt8]
    public var status: Int { head.status }
    public var text: String { String(decoding: body, as: UTF8.self) }
    public func header(_ name: String) -> String? { head.header(name) }
}

/// One TCP connection to a local server.
public final class RawConnection {
    public let fd: Int32
    private var buffer: [UInt8] = []
    private var eof = false

    /// Calls `body` with the IPv4 socket address `host:port` and its length.
    private static func withAddress(
        _ host: String, port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32
    ) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// Connects to `host:port`; with `from`, from that local IPv4 address (any of 127.0.0.0/8
    /// on loopback: a client seen by the server as another address); with `receiveBuffer`, a
    /// kernel receive buffer that small from the start (a reader whose window fills quickly).
    public init(
        port: UInt16, host: String = "127.0.0.1", from source: String? = nil, receiveBuffer: Int32? = nil
    ) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestClientError("socket() failed: errno \(errno)") }
        if let receiveBuffer { setReceiveBuffer(receiveBuffer) }
        if let source {
            guard Self.withAddress(source, port: 0, { bind(fd, $0, $1) }) == 0 else {
                let failure = errno
                close()  // once (see below)
                throw TestClientError("bind(\(source)) failed: errno \(failure)")
            }
        }
        guard Self.withAddress(host, port: port, { connect(fd, $0, $1) }) == 0 else {
            let e = errno
            // Swift runs deinit when an initializer throws after every stored property is set:
            // close here once and let deinit see it done. (Closing twice closed whatever
            // descriptor had reused the number: an in-process server's socket.)
            close()
            throw TestClientError("connect to \(host):\(port) failed: errno \(e)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close() }

    private var closed = false

    /// Closes the socket (FIN).
    public func close() {
        if !closed {
            closed = true
            Glibc.close(fd)
        }
    }

    /// Closes with a reset (RST) instead of a FIN.
    public func reset() {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    /// Sets the kernel receive buffer (before reading), e.g. to make a slow reader.
    public func setReceiveBuffer(_ bytes: Int32) {
        var b = bytes
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &b, socklen_t(MemoryLayout<Int32>.size))
    }

    public func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestClientError("send failed: errno \(errno)") }
            off += n
        }
    }

    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Reads more bytes into the buffer, waiting at most until `deadline`. Returns false on EOF
    /// or timeout.
    @discardableResult
    private func fill(deadline: Double) throws -> Bool {
        if eof { return false }
        let remaining = deadline - now()
        guard remaining > 0 else { return false }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&p, 1, Int32(max(1, remaining * 1000)))
        guard ready > 0 else { return false }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 {
            eof = true
            return false
        }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }

    /// Whether the peer has closed the connection (EOF seen, or seen within `timeout`).
    public func waitForClose(timeout: Double) throws -> Bool {
        let deadline = now() + timeout
        while !eof && now() < deadline {
            _ = try fill(deadline: deadline)
            buffer.removeAll()
        }
        return eof
    }

    /// Reads one CRLF-terminated line (without the CRLF).
    func readLine(deadline: Double) throws -> String? {
        while true {
            if let i = findCRLF() {
                let line = String(decoding: buffer[0..<i], as: UTF8.self)
                buffer.removeFirst(i + 2)
                return line
            }
            guard try fill(deadline: deadline) else { return nil }
        }
    }

    private func findCRLF() -> Int? {
        guard buffer.count >= 2 else { return nil }
        for i in 0..<(buffer.count - 1) where buffer[i] == 13 && buffer[i + 1] == 10 { return i }
        return nil
    }

    /// Reads exactly `n` bytes, or fewer at EOF/timeout.
    public func readExactly(_ n: Int, deadline: Double) throws -> [UInt8] {
        while buffer.count < n {
            guard try fill(deadline: deadline) else { break }
        }
        let k = min(n, buffer.count)
        let out = Array(buffer[0..<k])
        buffer.removeFirst(k)
        return out
    }

    /// Returns what is buffered plus whatever arrives before `deadline` (or EOF).
    public func readAvailable(deadline: Double) throws -> [UInt8] {
        if buffer.isEmpty { _ = try fill(deadline: deadline) }
        let out = buffer
        buffer.removeAll()
        return out
    }

    public var isEOF: Bool { eof && buffer.isEmpty }

    /// Reads a status line and headers.
    public func readHead(timeout: Double = 5) throws -> ResponseHead {
        let deadline = now() + timeout
        guard let status = try readLine(deadline: deadline) else {
            throw TestClientError("no status line within \(timeout)s")
        }
        let parts = status.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let code = Int(parts[1]) else { throw TestClientError("bad status line: \(status)") }
        var headers: [(name: String, value: String)] = []
        while let line = try readLine(deadline: deadline), !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw TestClientError("bad header line: \(line)") }
            headers.append(
                (String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " })))
        }
        return ResponseHead(version: String(parts[0]), status: code, headers: headers)
    }
}

/// Sends one request on a new connection and reads the whole response (Content-Length or
/// close-delimited bodies).
public func httpRequest(
    port: UInt16, method: String = "GET", path: String, headers: [(String, String)] = [], body: [UInt8] = [],
    timeout: Double = 5
) throws -> SimpleResponse {
    let c = try RawConnection(port: port)
    defer { c.close() }
    var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
    for (n, v) in headers { request += "\(n): \(v)\r\n" }
    if !body.isEmpty || method == "POST" { request += "Content-Length: \(body.count)\r\n" }
    request += "\r\n"
    try c.send(Array(request.utf8) + body)
    let head = try c.readHead(timeout: timeout)
    let deadline = now() + timeout
    if method == "HEAD" || head.status == 204 || head.status == 304 { return SimpleResponse(head: head, body: []) }
    if let length = head.header("Content-Length").flatMap(Int.init) {
        return SimpleResponse(head: head, body: try c.readExactly(length, deadline: deadline))
    }
    var body: [UInt8] = []
    while now() < deadline {
        let more = try c.readAvailable(deadline: deadline)
        if more.isEmpty && c.isEOF { break }
        body += more
    }
    return SimpleResponse(head: head, body: body)
}
