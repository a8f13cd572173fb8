internal import CHiredis
import MicroSSECore
import MicroSSEWire

#if canImport(Glibc)
    import Glibc
#endif

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
    /// Where this connection goes.
    package let endpoint: RedisURL.Endpoint

    /// Connects to the server `url` names directly (not through sentinels).
    package convenience init(url: RedisURL, timeoutMilliseconds: Int) throws(MicroSSEError) {
        try self.init(
            host: url.host, port: url.port, password: url.password, database: url.database,
            timeoutMilliseconds: timeoutMilliseconds, name: url.description)
    }

    /// Connects (and authenticates and selects the database when asked) within
    /// `timeoutMilliseconds`. Throws `.unavailable` with the reason when Redis cannot be reached;
    /// `name` is how messages call the server.
    package init(
        host: String, port: Int, password: String? = nil, database: Int = 0, timeoutMilliseconds: Int,
        name: String? = nil
    ) throws(MicroSSEError) {
        endpoint = RedisURL.Endpoint(host: host, port: port)
        let name = name ?? "redis://\(host):\(port)"
        let tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        guard let c = redisConnectWithTimeout(host, Int32(port), tv) else {
            throw MicroSSEError(.unavailable, "cannot allocate a Redis connection")
        }
        if c.pointee.err != 0 {
            let reason = withUnsafeBytes(of: c.pointee.errstr) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            redisFree(c)
            throw MicroSSEError(.unavailable, "cannot connect to Redis at \(name): \(reason)")
        }
        context = c
        setTimeout(milliseconds: timeoutMilliseconds)
        if let password {
            if case .error(let e) = try command(["AUTH", password]) {
                throw MicroSSEError(.unavailable, "Redis AUTH failed: \(e)")
            }
        }
        if database != 0 {
            if case .error(let e) = try command(["SELECT", String(database)]) {
                throw MicroSSEError(.unavailable, "Redis SELECT \(database) failed: \(e)")
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
        try pipeline([args])[0]
    }

    /// Sends `commands` in one write and reads their replies in order: one round trip.
    package func pipeline(_ commands: [[String]]) throws(MicroSSEError) -> [RedisValue] {
        try pipeline(commands.map { $0.map { Array($0.utf8) } })
    }

    /// ``pipeline(_:)`` with binary-safe arguments.
    package func pipeline(_ commands: [[[UInt8]]]) throws(MicroSSEError) -> [RedisValue] {
        guard let context, context.pointee.err == 0 else {
            throw MicroSSEError(.unavailable, "the Redis connection is closed")
        }
        // A write to a Redis that went away must fail, not kill the process (see the C shim).
        var savedMask = sigset_t()
        msse_redis_block_sigpipe(&savedMask)
        defer { msse_redis_restore_sigpipe(&savedMask) }
        for args in commands {
            // The arguments side by side in one buffer (one allocation per command, not one per
            // argument); hiredis copies them into its output buffer before it returns.
            var lengths = args.map(\.count)
            let total = lengths.reduce(0, +)
            let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: max(1, total))
            defer { buffer.deallocate() }
            var argv: [UnsafePointer<CChar>?] = []
            argv.reserveCapacity(args.count)
            var offset = 0
            for arg in args {
                let start = buffer.baseAddress! + offset
                arg.withUnsafeBytes { raw in
                    if raw.count > 0 {
                        UnsafeMutableRawPointer(start).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
                    }
                }
                argv.append(UnsafePointer(start))
                offset += arg.count
            }
            guard redisAppendCommandArgv(context, Int32(args.count), &argv, &lengths) == 0 else { throw failure() }
        }
        var replies: [RedisValue] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(context, &raw) == 0, let raw else { throw failure() }
            defer { freeReplyObject(raw) }
            replies.append(convert(raw.assumingMemoryBound(to: redisReply.self)))
        }
        return replies
    }

    /// The error of a failed call, from the context's message.
    private func failure() -> MicroSSEError {
        let reason = context.map { c in
            withUnsafeBytes(of: c.pointee.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let text = reason.flatMap { $0.isEmpty ? nil : $0 } ?? "connection lost"
        return MicroSSEError(.unavailable, "Redis command failed: \(text)")
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

extension RedisValue {
    /// The stream entry id this reply holds (`123-4`), parsed from its bytes; nil for anything else.
    package var streamID: RedisStreamID? {
        if case .string(let b) = self, let id = RedisStreamID(bytes: b) { return id }
        return text.flatMap(RedisStreamID.init)
    }
}
