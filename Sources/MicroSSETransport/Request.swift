/// An HTTP request as MicroSSE hands it to routes, authorizers and callbacks.
public struct Request: Sendable {
    /// The method, e.g. `GET`.
    public let method: String
    /// The percent-decoded path without the query, e.g. `/events/news`.
    public let path: String
    /// The protocol version, e.g. `HTTP/1.1`.
    public let httpVersion: String
    /// Every header in arrival order; names as the client sent them.
    public let headers: [(name: String, value: String)]
    /// Every query parameter in order, percent-decoded; repeated names are kept.
    public let query: [(name: String, value: String)]
    /// The request body (empty for GET); bounded by ``ServerConfiguration/maxPublishBytes``.
    public let body: [UInt8]
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
        self.headers = headers
        self.query = query
        self.body = body
        self.remoteAddress = remoteAddress
    }

    /// The first value of header `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { asciiCaseInsensitiveEquals($0.name, name) }?.value
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
    return zip(a, b).allSatisfy { x, y in
        x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= UInt8(ascii: "a") && (x | 0x20) <= UInt8(ascii: "z"))
    }
}
