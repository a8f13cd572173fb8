// The doctor's HTTP/1.1 client: plain POSIX sockets, so it sees exactly when bytes arrive.
#if canImport(Glibc)
    import Glibc
#endif

/// A reason the doctor could not do something, as one line of text.
struct DoctorError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// No response head arrived in time (a buffering proxy can hold even the head).
struct NoResponseHead: Error, CustomStringConvertible {
    var description: String { "no response head in time" }
}

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// An `http://` or `https://` URL, split into what a request needs.
struct DoctorURL: Sendable, CustomStringConvertible {
    /// Whether the URL is `https://`.
    let isTLS: Bool
    /// How an `https://` server's certificate is trusted.
    var trust = TLSTrust()
    /// The host without IPv6 brackets.
    var host: String
    var port: UInt16
    /// The request target: path and query, at least `/`.
    var target: String
    let description: String

    init(_ text: String) throws {
        description = text
        let lower = text.lowercased()
        isTLS = lower.hasPrefix("https://")
        guard isTLS || lower.hasPrefix("http://") else {
            throw DoctorError("'\(text)' is not an http:// or https:// URL")
        }
        var rest = Substring(text.dropFirst(isTLS ? "https://".count : "http://".count))
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        target = String(rest[authorityEnd...])
        if target.isEmpty { target = "/" } else if target.first == "?" { target = "/" + target }
        guard !authority.contains("@") else { throw DoctorError("user names in URLs are not supported: \(text)") }
        var hostPart = authority
        var portPart: Substring = ""
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { throw DoctorError("bad IPv6 host in \(text)") }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            portPart = authority[authority.index(after: close)...]
            if !portPart.isEmpty {
                guard portPart.first == ":" else { throw DoctorError("bad host in \(text)") }
                portPart = portPart.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        }
        guard !hostPart.isEmpty else { throw DoctorError("no host in \(text)") }
        host = String(hostPart)
        if portPart.isEmpty {
            port = isTLS ? 443 : 80
        } else {
            guard let p = UInt16(portPart), p > 0 else { throw DoctorError("bad port in \(text)") }
            port = p
        }
    }

    /// The `Host` header's value.
    var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == (isTLS ? 443 : 80) ? name : "\(name):\(port)"
    }
}

/// A status line and its headers.
struct ResponseHead {
    var version: String
    var status: Int
    var reason: String
    var headers: [(name: String, value: String)]

    /// The values of a header (case-insensitive), joined with ", " as HTTP allows; nil when absent.
    func header(_ name: String) -> String? {
        let values = headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }
}

/// One TCP connection, with TLS for `https://`; every read reports when it returned.
final class HTTPConnection {
    private var fd: Int32 = -1
    /// Bytes read past the response head, not yet handed out.
    private var leftover: [UInt8] = []
    /// The TLS session of an `https://` URL.
    private(set) var tls: TLSSession?
    /// When connecting, the handshake and sending must be done: `timeout` after `init` began.
    private let deadline: Double

    /// Connects to the URL's host and port (every address it resolves to, in order); for
    /// `https://`, handshakes offering `protocols` by ALPN. Connecting (all addresses together),
    /// the handshake and every later `send` end within `timeout` seconds of this call.
    init(_ url: DoctorURL, timeout: Double, protocols: [String] = ["http/1.1"]) throws {
        deadline = monotonicSeconds() + timeout
        try connect(url)
        if url.isTLS {
            tls = try TLSSession(fd: fd, host: url.host, protocols: protocols, trust: url.trust, deadline: deadline)
        }
    }

    private func connect(_ url: DoctorURL) throws {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(url.host, String(url.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw DoctorError("cannot resolve \(url.host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var reason = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let ai = next {
            next = ai.pointee.ai_next
            let s = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            if s < 0 { continue }
            let timeout = deadline - monotonicSeconds()
            if let failure = Self.connect(s, ai.pointee.ai_addr, ai.pointee.ai_addrlen, timeout: timeout) {
                reason = failure
                Glibc.close(s)
                continue
            }
            var one: Int32 = 1
            setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            fd = s
            return
        }
        throw DoctorError("cannot connect to \(url.hostHeader): \(reason)")
    }

    /// A non-blocking connect bounded by `timeout`; nil on success, else the reason.
    private static func connect(
        _ s: Int32, _ address: UnsafeMutablePointer<sockaddr>?, _ length: socklen_t, timeout: Double
    ) -> String? {
        let flags = fcntl(s, F_GETFL)
        _ = fcntl(s, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(s, F_SETFL, flags) }
        if Glibc.connect(s, address, length) == 0 { return nil }
        guard errno == EINPROGRESS else { return String(cString: strerror(errno)) }
        var p = pollfd(fd: s, events: Int16(POLLOUT), revents: 0)
        guard timeout > 0, poll(&p, 1, Int32(timeout * 1000)) == 1 else { return "timed out" }
        var error: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(s, SOL_SOCKET, SO_ERROR, &error, &size)
        return error == 0 ? nil : String(cString: strerror(error))
    }

    deinit { close() }

    func close() {
        if fd >= 0 { tls?.close() }
        tls = nil
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        if let tls { return try tls.send(bytes, deadline: deadline) }
        var offset = 0
        while offset < bytes.count {
            guard waitReady(fd, write: true, deadline: deadline) else { throw DoctorError("send timed out") }
            let n = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n < 0, errno == EAGAIN || errno == EINTR { continue }
            guard n > 0 else { throw DoctorError("send failed: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    /// One read: the bytes (empty at end of stream), or nil when nothing came before `deadline`.
    func receive(deadline: Double) throws -> [UInt8]? {
        if !leftover.isEmpty {
            defer { leftover = [] }
            return leftover
        }
        if let tls { return try tls.receive(deadline: deadline) }
        let remaining = deadline - monotonicSeconds()
        guard remaining > 0 else { return nil }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&p, 1, Int32(min(remaining * 1000 + 1, 3_600_000)))
        guard ready > 0 else { return nil }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            if errno == ECONNRESET { return [] }
            throw DoctorError("read failed: \(String(cString: strerror(errno)))")
        }
        return Array(chunk[0..<n])
    }

    /// Reads a status line and headers (at most 64 KiB); what follows stays for `receive`.
    func readHead(deadline: Double) throws -> ResponseHead {
        var bytes: [UInt8] = []
        var searched = 0
        while true {
            if let end = Self.headEnd(bytes, from: searched) {
                leftover = Array(bytes[(end + 4)...])
                return try Self.parseHead(String(decoding: bytes[..<end], as: UTF8.self))
            }
            guard bytes.count < 65536 else { throw DoctorError("response head larger than 64 KiB") }
            guard let more = try receive(deadline: deadline) else { throw NoResponseHead() }
            guard !more.isEmpty else { throw DoctorError("connection closed before a response head") }
            searched = max(0, bytes.count - 3)
            bytes += more
        }
    }

    /// Where the blank line ending the head starts, looking from `start` on.
    private static func headEnd(_ bytes: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= start + 4 else { return nil }
        return (start...(bytes.count - 4)).first {
            bytes[$0] == 13 && bytes[$0 + 1] == 10 && bytes[$0 + 2] == 13 && bytes[$0 + 3] == 10
        }
    }

    private static func parseHead(_ text: String) throws -> ResponseHead {
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let status = lines[0].split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard status.count >= 2, status[0].hasPrefix("HTTP/"), let code = Int(status[1]) else {
            throw DoctorError("not an HTTP response: \(lines[0])")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw DoctorError("bad header line: \(line)") }
            let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            headers.append((String(line[..<colon]), String(value)))
        }
        return ResponseHead(
            version: String(status[0]), status: code, reason: status.count > 2 ? String(status[2]) : "",
            headers: headers)
    }
}

/// Sends `POST url` with `body` (and a bearer token) on a new connection; returns the status and
/// the start of the response body, or throws when the whole exchange is not over by `deadline`.
func postEvent(_ url: DoctorURL, body: String, token: String?, deadline: Double) throws -> (Int, String) {
    guard deadline > monotonicSeconds() else { throw DoctorError("no time left to publish") }
    let connection = try HTTPConnection(url, timeout: deadline - monotonicSeconds())
    var request = "POST \(url.target) HTTP/1.1\r\nHost: \(url.hostHeader)\r\nConnection: close\r\n"
    request += "User-Agent: microsse-doctor\r\nContent-Type: text/plain; charset=utf-8\r\n"
    if let token { request += "Authorization: Bearer \(token)\r\n" }
    request += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    try connection.send(request)
    let head: ResponseHead
    do {
        head = try connection.readHead(deadline: deadline)
    } catch is NoResponseHead {
        throw DoctorError("POST \(url): no response in time")
    }
    var decoder = BodyDecoder(head)
    var text: [UInt8] = []
    while !decoder.complete, text.count < 512, let bytes = try connection.receive(deadline: deadline), !bytes.isEmpty {
        text += try decoder.decode(bytes)
    }
    let line = text.prefix(200).prefix { $0 != 10 && $0 != 13 }
    return (head.status, String(decoding: line, as: UTF8.self))
}
