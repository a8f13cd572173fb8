import MicroSSE

#if canImport(Glibc)
    import Glibc
#endif

/// A `text/event-stream` response read incrementally: de-chunked (HTTP/1.1) or close-delimited
/// (HTTP/1.0), then parsed by the strict ``EventStreamParser``.
public final class EventStreamClient {
    public let connection: RawConnection
    public let head: ResponseHead
    public private(set) var parser = EventStreamParser()
    /// Every body byte received so far, de-chunked.
    public private(set) var body: [UInt8] = []
    /// Events received and not yet taken by ``next(timeout:)``.
    public private(set) var pending: [ParsedEvent] = []
    /// True once the body ended: the final zero-length chunk (HTTP/1.1) or EOF (HTTP/1.0).
    public private(set) var endedCleanly = false
    /// True once the connection closed without a clean end.
    public private(set) var brokenOff = false
    private let chunked: Bool
    private var raw: [UInt8] = []
    private var chunkRemaining = 0
    private enum ChunkState { case size, data, dataCRLF, trailer, done }
    private var state = ChunkState.size

    /// Opens `GET path` with `Accept: text/event-stream` and reads the head (`receiveBuffer`:
    /// see ``RawConnection/init(port:host:from:receiveBuffer:)``).
    public init(
        port: UInt16, path: String, headers: [(String, String)] = [], http10: Bool = false, timeout: Double = 5,
        receiveBuffer: Int32? = nil
    ) throws {
        connection = try RawConnection(port: port, receiveBuffer: receiveBuffer)
        var request = "GET \(path) HTTP/\(http10 ? "1.0" : "1.1")\r\nHost: 127.0.0.1:\(port)\r\n"
        request += "Accept: text/event-stream\r\n"
        for (n, v) in headers { request += "\(n): \(v)\r\n" }
        request += "\r\n"
        try connection.send(request)
        head = try connection.readHead(timeout: timeout)
        chunked = head.header("Transfer-Encoding")?.lowercased() == "chunked"
    }

    public var comments: [String] { parser.comments }
    public var status: Int { head.status }

    /// Reads whatever arrives before `deadline`; returns false when nothing more can come.
    @discardableResult
    public func pump(until deadline: Double) throws -> Bool {
        if endedCleanly || brokenOff { return false }
        let bytes = try connection.readAvailable(deadline: deadline)
        if bytes.isEmpty && connection.isEOF {
            if chunked { brokenOff = true } else { endedCleanly = true }
            return false
        }
        if chunked { try dechunk(bytes) } else { deliver(bytes) }
        return true
    }

    private func deliver(_ bytes: some Collection<UInt8>) {
        body += bytes
        pending += parser.feed(bytes)
    }

    private func dechunk(_ bytes: [UInt8]) throws {
        raw += bytes
        var i = 0
        loop: while i < raw.count {
            switch state {
            case .size, .trailer, .dataCRLF:
                guard let end = (i..<max(i, raw.count - 1)).first(where: { raw[$0] == 13 && raw[$0 + 1] == 10 })
                else { break loop }
                let line = String(decoding: raw[i..<end], as: UTF8.self)
                i = end + 2
                switch state {
                case .size:
                    let hex = line.split(separator: ";").first.map(String.init) ?? ""
                    guard let n = Int(hex, radix: 16) else { throw TestClientError("bad chunk size line '\(line)'") }
                    if n == 0 {
                        state = .trailer
                    } else {
                        chunkRemaining = n
                        state = .data
                    }
                case .dataCRLF:
                    guard line.isEmpty else { throw TestClientError("chunk not followed by CRLF") }
                    state = .size
                case .trailer:
                    if line.isEmpty {
                        state = .done
                        endedCleanly = true
                    }
                default: break
                }
            case .data:
                let n = min(chunkRemaining, raw.count - i)
                deliver(raw[i..<(i + n)])
                chunkRemaining -= n
                i += n
                if chunkRemaining == 0 { state = .dataCRLF }
            case .done:
                throw TestClientError("bytes after the final chunk")
            }
        }
        raw.removeFirst(i)
    }

    /// The next event, waiting at most `timeout` seconds; nil if none came.
    public func next(timeout: Double = 5) throws -> ParsedEvent? {
        let deadline = now() + timeout
        while pending.isEmpty {
            guard now() < deadline, try pump(until: deadline) || !pending.isEmpty else { break }
        }
        return pending.isEmpty ? nil : pending.removeFirst()
    }

    /// Exactly `count` events, or throws after `timeout` seconds with how many came.
    public func events(_ count: Int, timeout: Double = 10) throws -> [ParsedEvent] {
        let deadline = now() + timeout
        var out: [ParsedEvent] = []
        while out.count < count {
            guard let e = try next(timeout: max(0, deadline - now())) else {
                throw TestClientError("got \(out.count) of \(count) events within \(timeout)s")
            }
            out.append(e)
        }
        return out
    }

    /// Waits until the stream ends; returns true when it ended cleanly (final chunk / EOF).
    public func waitForEnd(timeout: Double = 5) throws -> Bool {
        let deadline = now() + timeout
        while !endedCleanly && !brokenOff && now() < deadline {
            try pump(until: deadline)
        }
        return endedCleanly
    }

    /// Waits until at least `n` comments have arrived.
    public func waitForComments(_ n: Int, timeout: Double = 5) throws -> Bool {
        let deadline = now() + timeout
        while parser.comments.count < n && now() < deadline {
            guard try pump(until: deadline) else { break }
        }
        return parser.comments.count >= n
    }

    public func close() { connection.close() }
}
