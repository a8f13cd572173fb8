/// An HTTP request as MicroSSE hands it to routes, authorizers and callbacks.
public struct Request: Sendable {
    /// The method, e.g. `GET`.
    public let method: String
    /// The percent-decoded path without the query, e.g. `/events/news`.
    public let path: String
    /// The protocol version, e.g. `HTTP/1.1`.
    public let httpVersion: String
    /// Every header in arrival order; names as the client sent them (built on each access:
    /// look one up with ``header(_:)`` or ``headerValues(_:)``).
    public var headers: [(name: String, value: String)] { headerList.pairs }
    /// The headers, kept in one buffer: a stream's request lives as long as the stream.
    package let headerList: HeaderList
    /// Every query parameter in order, percent-decoded; repeated names are kept.
    public let query: [(name: String, value: String)]
    /// The request body (empty for GET); bounded by ``ServerConfiguration/maxPublishBytes``.
    public private(set) var body: [UInt8]
    /// The peer's numeric address, e.g. `127.0.0.1`, or empty when unknown.
    public let remoteAddress: String

    /// Creates a request value (used by the transport and by tests of route handlers).
    public init(
        method: String, path: String, httpVersion: String = "HTTP/1.1",
        headers: [(name: String, value: String)] = [], query: [(name: String, value: String)] = [],
        body: [UInt8] = [], remoteAddress: String = ""
    ) {
        self.method = method
        self.path = path
        self.httpVersion = httpVersion
        self.headerList = HeaderList(headers)
        self.query = query
        self.body = body
        self.remoteAddress = remoteAddress
    }

    /// The first value of header `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        headerList.first(named: name)
    }

    /// Every value of header `name`, compared case-insensitively, in arrival order.
    public func headerValues(_ name: String) -> [String] {
        headerList.values(named: name)
    }

    /// This request with `body` (the head as it arrived, then its body).
    package func with(body: [UInt8]) -> Request {
        var r = self
        r.body = body
        return r
    }

    /// The first value of query parameter `name`.
    public func queryValue(_ name: String) -> String? {
        query.first { $0.name == name }?.value
    }

    /// Every value of query parameter `name`, in order.
    public func queryValues(_ name: String) -> [String] {
        query.filter { $0.name == name }.map(\.value)
    }
}

/// ASCII case-insensitive equality, for header names.
package func asciiCaseInsensitiveEquals(_ a: String, _ b: String) -> Bool {
    let a = a.utf8
    let b = b.utf8
    guard a.count == b.count else { return false }
    return zip(a, b).allSatisfy(asciiCaseInsensitiveEquals)
}

private func asciiCaseInsensitiveEquals(_ x: UInt8, _ y: UInt8) -> Bool {
    x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= UInt8(ascii: "a") && (x | 0x20) <= UInt8(ascii: "z"))
}

/// Header names and values in one byte buffer: each as a length (LEB128) and its UTF-8 bytes.
/// An idle stream keeps its request for its whole life, and an array of string pairs costs an
/// allocation for the array and one for every name or value over 15 bytes (a browser's
/// `User-Agent` or `Cookie`); this costs one.
package struct HeaderList: Sendable {
    private var bytes: [UInt8] = []

    package init(_ pairs: [(name: String, value: String)]) {
        func size(_ text: String) -> Int {
            let n = text.utf8.count
            return n + (n.bitWidth - n.leadingZeroBitCount + 6) / 7 + (n == 0 ? 1 : 0)
        }
        bytes.reserveCapacity(pairs.reduce(0) { $0 + size($1.name) + size($1.value) })
        for (name, value) in pairs {
            append(name)
            append(value)
        }
    }

    private mutating func append(_ text: String) {
        var n = text.utf8.count
        while n >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: n) | 0x80)
            n >>= 7
        }
        bytes.append(UInt8(n))
        bytes.append(contentsOf: text.utf8)
    }

    /// Calls `body` with each name and value, in order, until it returns false.
    private func forEach(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool) {
        bytes.withUnsafeBytes { raw in
            var i = 0
            func next() -> UnsafeRawBufferPointer {
                var n = 0
                var shift = 0
                while raw[i] & 0x80 != 0 {
                    n |= Int(raw[i] & 0x7F) << shift
                    shift += 7
                    i += 1
                }
                n |= Int(raw[i]) << shift
                i += 1
                defer { i += n }
                return UnsafeRawBufferPointer(rebasing: raw[i..<i + n])
            }
            while i < raw.count {
                let name = next()
                if !body(name, next()) { return }
            }
        }
    }

    package var pairs: [(name: String, value: String)] {
        var result: [(name: String, value: String)] = []
        forEach { name, value in
            result.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
            return true
        }
        return result
    }

    /// The first value of header `name`, compared ASCII case-insensitively.
    package func first(named name: String) -> String? {
        var found: String?
        forEach(named: name) { value in
            found = String(decoding: value, as: UTF8.self)
            return false
        }
        return found
    }

    /// Every value of header `name`, compared ASCII case-insensitively, in order.
    package func values(named name: String) -> [String] {
        var found: [String] = []
        forEach(named: name) { value in
            found.append(String(decoding: value, as: UTF8.self))
            return true
        }
        return found
    }

    private func forEach(named name: String, _ body: (UnsafeRawBufferPointer) -> Bool) {
        var wanted = name
        wanted.withUTF8 { key in
            forEach { n, value in
                guard n.count == key.count, zip(n, key).allSatisfy({ asciiCaseInsensitiveEquals($0, $1) }) else {
                    return true
                }
                return body(value)
            }
        }
    }
}
