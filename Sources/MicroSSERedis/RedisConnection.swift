internal import CHiredis
import MicroSSECore
import MicroSSEWire

#if canImport(Glibc)
    import Glibc
#endif

/// Where a Redis server is: `redis://[:PASSWORD@]HOST[:PORT][/DB]`.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    /// Host name or address.
    public var host: String
    /// TCP port (default 6379).
    public var port: Int
    /// Database number (default 0).
    public var database: Int
    /// Password for `AUTH`, if any.
    public var password: String?

    /// Parses `redis://[:PASSWORD@]HOST[:PORT][/DB]`; throws `.invalidArgument` with the reason.
    public init(_ text: String) throws(MicroSSEError) {
        guard text.hasPrefix("redis://") else {
            throw MicroSSEError(.invalidArgument, "Redis URL must start with redis:// (got '\(text)')")
        }
        var rest = Substring(text.dropFirst("redis://".count))
        password = nil
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            let pass = userinfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            password = String(pass.count == 2 ? pass[1] : pass[0])
            rest = rest[rest.index(after: at)...]
        }
        database = 0
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            if !db.isEmpty {
                guard let n = Int(db), n >= 0 else {
                    throw MicroSSEError(.invalidArgument, "Redis database must be a number (got '\(db)')")
                }
                database = n
            }
            rest = rest[..<slash]
        }
        port = 6379
        if let colon = rest.lastIndex(of: ":"), !rest.hasPrefix("[") || rest[..<colon].hasSuffix("]") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else {
                throw MicroSSEError(.invalidArgument, "Redis port must be 1-65535 in '\(text)'")
            }
            port = p
            rest = rest[..<colon]
        }
        if rest.hasPrefix("[") && rest.hasSuffix("]") { rest = rest.dropFirst().dropLast() }
        guard !rest.isEmpty else { throw MicroSSEError(.invalidArgument, "Redis URL has no host: '\(text)'") }
        host = String(rest)
    }

    public var description: String { "redis://\(host):\(port)/\(database)" }
}

/// A Redis reply.
package enum RedisValue: Equatable {
    case string([UInt8])
    case array([RedisValue])
    case integer(Int)
    case null
    case status(String)
    case error(String)

    package var text: String? {
        switch self {
        case .string(let b): return String(decoding: b, as: UTF8.self)
        case .status(let s): return s
        case .integer(let n): return String(n)
        default: return nil
        }
    }

    package var array: [RedisValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
}

/// One synchronous hiredis connection. Not thread-safe: one owner at a time (a dedicated thread,
/// or callers serialised by a lock). The only code that touches hiredis.
package final class RedisConnection {
    private var context: UnsafeMutablePointer<redisContext>?
    package let url: RedisURL

    /// Connects (and authenticates and selects the database) within `timeoutMilliseconds`.
    /// Throws `.unavailable` with the reason when Redis cannot be reached.
    package init(url: RedisURL, timeoutMilliseconds: Int) throws(MicroSSEError) {
        self.url = url
        let tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        guard let c = redisConnectWithTimeout(url.host, Int32(url.port), tv) else {
            throw MicroSSEError(.unavailable, "cannot allocate a Redis connection")
        }
        if c.pointee.err != 0 {
            let reason = withUnsafeBytes(of: c.pointee.errstr) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            redisFree(c)
            throw MicroSSEError(.unavailable, "cannot connect to Redis at \(url): \(reason)")
        }
        context = c
        setTimeout(milliseconds: timeoutMilliseconds)
        if let password = url.password {
            if case .error(let e) = try command(["AUTH", password]) {
                throw MicroSSEError(.unavailable, "Redis AUTH failed: \(e)")
            }
        }
        if url.database != 0 {
            if case .error(let e) = try command(["SELECT", String(url.database)]) {
                throw MicroSSEError(.unavailable, "Redis SELECT \(url.database) failed: \(e)")
            }
        }
    }

    deinit {
        if let context { redisFree(context) }
    }

    /// Sets the read/write timeout of later commands (0 = block forever).
    package func setTimeout(milliseconds: Int) {
        guard let context else { return }
        _ = redisSetTimeout(context, timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000))
    }

    /// Whether an I/O error broke the connection (it must then be replaced).
    package var isBroken: Bool { context == nil || context!.pointee.err != 0 }

    /// Sends one command with binary-safe arguments; returns the reply (Redis errors come back
    /// as `.error`). Throws `.unavailable` when the connection fails or times out.
    package func command(_ args: [String]) throws(MicroSSEError) -> RedisValue {
        try command(bytes: args.map { Array($0.utf8) })
    }

    package func command(bytes args: [[UInt8]]) throws(MicroSSEError) -> RedisValue {
        guard let context, context.pointee.err == 0 else {
            throw MicroSSEError(.unavailable, "the Redis connection is closed")
        }
        // hiredis copies the arguments into its output buffer before it returns.
        let pointers = args.map { arg -> UnsafeMutablePointer<CChar> in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, arg.count))
            arg.withUnsafeBytes { raw in
                if raw.count > 0 { UnsafeMutableRawPointer(p).copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
            }
            return p
        }
        defer { pointers.forEach { $0.deallocate() } }
        var argv = pointers.map { UnsafePointer<CChar>?($0) }
        var lengths = args.map(\.count)
        let raw = redisCommandArgv(context, Int32(args.count), &argv, &lengths)
        guard let raw else {
            let reason = withUnsafeBytes(of: context.pointee.errstr) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            throw MicroSSEError(.unavailable, "Redis command failed: \(reason.isEmpty ? "connection lost" : reason)")
        }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return convert(reply)
    }

    private func convert(_ r: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let reply = r.pointee
        switch reply.type {
        case 1:  // REDIS_REPLY_STRING
            return .string(bytes(reply.str, reply.len))
        case 2:  // REDIS_REPLY_ARRAY
            var items: [RedisValue] = []
            items.reserveCapacity(reply.elements)
            for i in 0..<reply.elements {
                if let e = reply.element[i] { items.append(convert(e)) } else { items.append(.null) }
            }
            return .array(items)
        case 3: return .integer(Int(reply.integer))  // REDIS_REPLY_INTEGER
        case 5: return .status(String(decoding: bytes(reply.str, reply.len), as: UTF8.self))  // STATUS
        case 6: return .error(String(decoding: bytes(reply.str, reply.len), as: UTF8.self))  // ERROR
        default: return .null  // REDIS_REPLY_NIL and anything newer
        }
    }

    private func bytes(_ p: UnsafeMutablePointer<CChar>?, _ n: Int) -> [UInt8] {
        guard let p, n > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }
}

extension RedisConnection {
    /// The socket, so another thread can shut it down to interrupt a blocking read.
    package var fileDescriptor: Int32 { context.map { $0.pointee.fd } ?? -1 }
}
