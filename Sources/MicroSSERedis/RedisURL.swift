import MicroSSECore
import MicroSSEWire

/// Where Redis is: one server, `redis://[:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]`, or a primary
/// found through Redis Sentinel, `redis-sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTERNAME[/DB][?OPTIONS]`.
///
/// Options: `wait=auto` (the default with sentinels: `WAIT` for every replica the primary
/// reports connected and in sync, refreshed twice a second; with none, the primary alone
/// acknowledges and the reply says so), `wait=N` (a publish is acknowledged only once `N`
/// replicas confirmed it with `WAIT`; default 0 without sentinels), `wait=all` (with sentinels:
/// every replica they consider up, and at least one), `waitTimeout=MS` (how long `WAIT` may
/// take, 1-10000; default 250), `workers=N` (threads running HTTP publishes and resumes, each with its own
/// connection, 1-64; default 2) and `queue=N` (publishes that may wait for them, 1-1000000;
/// default 1024). The password is the data nodes'; sentinels are asked without one.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    /// A `HOST:PORT` pair.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        /// Host name or address.
        public var host: String
        /// TCP port.
        public var port: Int

        /// An endpoint at `host`:`port`.
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// Host name or address (for a sentinel URL, the first sentinel's).
    public var host: String
    /// TCP port (default 6379; for a sentinel URL, the first sentinel's).
    public var port: Int
    /// Database number (default 0).
    public var database: Int
    /// Password for `AUTH`, if any.
    public var password: String?
    /// The sentinels to ask for the primary; empty for a plain `redis://` URL.
    public var sentinels: [Endpoint]
    /// The name the sentinels monitor the primary under; nil for a plain `redis://` URL.
    public var masterName: String?
    /// Replicas that must confirm a publish (`WAIT`) before it is acknowledged; 0 = none (or
    /// see ``waitForConnectedReplicas``).
    public var waitReplicas: Int
    /// `wait=auto` (the default with sentinels): every replica the primary reports connected
    /// and in sync must confirm a publish; while it reports none, the primary alone
    /// acknowledges it, and the reply says so (`MicroSSE-Replicated: 0`). A failover thus costs
    /// seconds of publishing, not all of it until a replica is back.
    public var waitForConnectedReplicas: Bool
    /// `wait=all` (sentinel URLs only): every replica the sentinels consider up must confirm a
    /// publish, and at least one.
    public var waitForEveryReplica: Bool
    /// How long `WAIT` may take, in milliseconds.
    public var waitTimeoutMilliseconds: Int
    /// Threads that run HTTP publishes and resume replays (each with its own command
    /// connection), so libmicrohttpd's threads never wait on Redis: ``workerRange``, default 2.
    public var workers: Int
    /// Publishes that may wait for a worker (one more gets `503`); resumes, each a stream the
    /// hub already admitted, always wait: ``queueLimitRange``, default 1,024.
    public var queueLimit: Int

    /// Allowed values of ``workers`` (`workers=N`).
    public static let workerRange = 1...64
    /// Allowed values of ``queueLimit`` (`queue=N`).
    public static let queueLimitRange = 1...1_000_000

    /// Whether the primary is found through sentinels.
    public var usesSentinel: Bool { masterName != nil }

    /// Parses a `redis://` or `redis-sentinel://` URL; throws `.invalidArgument` with the reason.
    ///
    /// No error repeats the password: each quotes the URL as ``redacted(_:)`` gives it.
    public init(_ text: String) throws(MicroSSEError) {
        let shown = Self.redacted(text)
        let sentinel: Bool
        var rest: Substring
        if text.hasPrefix("redis://") {
            sentinel = false
            rest = Substring(text.dropFirst("redis://".count))
        } else if text.hasPrefix("redis-sentinel://") {
            sentinel = true
            rest = Substring(text.dropFirst("redis-sentinel://".count))
        } else {
            throw MicroSSEError(
                .invalidArgument, "Redis URL must start with redis:// or redis-sentinel:// (got '\(shown)')")
        }
        // The user part ends at the last '@', so a password may hold '?', '/' or '@'; no option
        // name or value quoted below can be a piece of it.
        password = nil
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            let pass = userinfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            password = String(pass.count == 2 ? pass[1] : pass[0])
            rest = rest[rest.index(after: at)...]
        }
        var wait = 0
        var waitAll = false
        var waitAuto = sentinel
        var waitTimeout = 250
        var workerCount = 2
        var queue = 1_024
        if let q = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: q)...].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let value = kv.count == 2 ? Int(kv[1]) : nil
                switch kv[0] {
                case "wait" where kv.count == 2 && kv[1] == "all":
                    guard sentinel else {
                        throw MicroSSEError(
                            .invalidArgument, "Redis URL option wait=all needs redis-sentinel:// in '\(shown)'")
                    }
                    waitAll = true
                    waitAuto = false
                case "wait" where kv.count == 2 && kv[1] == "auto":
                    waitAuto = true
                    waitAll = false
                case "wait":
                    guard let value, (0...100).contains(value) else {
                        throw MicroSSEError(
                            .invalidArgument, "Redis URL option wait must be 0-100, auto or all in '\(shown)'")
                    }
                    wait = value
                    waitAll = false
                    waitAuto = false
                case "waitTimeout":
                    guard let value, (1...10_000).contains(value) else {
                        throw MicroSSEError(
                            .invalidArgument, "Redis URL option waitTimeout must be 1-10000 (ms) in '\(shown)'")
                    }
                    waitTimeout = value
                case "workers":
                    guard let value, Self.workerRange.contains(value) else {
                        throw MicroSSEError(.invalidArgument, "Redis URL option workers must be 1-64 in '\(shown)'")
                    }
                    workerCount = value
                case "queue":
                    guard let value, Self.queueLimitRange.contains(value) else {
                        throw MicroSSEError(.invalidArgument, "Redis URL option queue must be 1-1000000 in '\(shown)'")
                    }
                    queue = value
                default:
                    throw MicroSSEError(.invalidArgument, "unknown Redis URL option '\(kv[0])' in '\(shown)'")
                }
            }
            rest = rest[..<q]
        }
        waitReplicas = waitAll || waitAuto ? 0 : wait
        waitForEveryReplica = waitAll
        waitForConnectedReplicas = waitAuto
        waitTimeoutMilliseconds = waitTimeout
        workers = workerCount
        queueLimit = queue
        var path: [Substring] = []
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...].split(separator: "/", omittingEmptySubsequences: false)
            rest = rest[..<slash]
        }
        if sentinel {
            guard let name = path.first, !name.isEmpty else {
                throw MicroSSEError(.invalidArgument, "Redis sentinel URL has no master name: '\(shown)'")
            }
            masterName = String(name)
            path.removeFirst()
            var list: [Endpoint] = []
            for part in rest.split(separator: ",", omittingEmptySubsequences: false) {
                list.append(try Self.endpoint(part, defaultPort: 26379, in: shown))
            }
            sentinels = list
        } else {
            masterName = nil
            sentinels = []
        }
        guard path.count <= 1 else { throw MicroSSEError(.invalidArgument, "Redis URL has too many '/' in '\(shown)'") }
        database = 0
        if let db = path.first, !db.isEmpty {
            guard let n = Int(db), n >= 0 else {
                throw MicroSSEError(.invalidArgument, "Redis database must be a number (got '\(db)' in '\(shown)')")
            }
            database = n
        }
        let first: Endpoint
        if let s = sentinels.first { first = s } else { first = try Self.endpoint(rest, defaultPort: 6379, in: shown) }
        host = first.host
        port = first.port
    }

    /// Parses `HOST[:PORT]` or `[V6]:PORT`.
    static func endpoint(_ part: Substring, defaultPort: Int, in text: String) throws(MicroSSEError) -> Endpoint {
        var rest = part
        var port = defaultPort
        if let colon = rest.lastIndex(of: ":"), !rest.hasPrefix("[") || rest[..<colon].hasSuffix("]") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else {
                throw MicroSSEError(.invalidArgument, "Redis port must be 1-65535 in '\(text)'")
            }
            port = p
            rest = rest[..<colon]
        }
        if rest.hasPrefix("[") && rest.hasSuffix("]") { rest = rest.dropFirst().dropLast() }
        guard !rest.isEmpty else { throw MicroSSEError(.invalidArgument, "Redis URL has no host: '\(text)'") }
        return Endpoint(host: String(rest), port: port)
    }

    /// `text` with the password of a `redis://` or `redis-sentinel://` URL (everything between
    /// `://` and the last `@`) replaced by `***`, for messages and logs.
    public static func redacted(_ text: String) -> String {
        guard let scheme = text.firstRange(of: "://"), let at = text.lastIndex(of: "@"), at >= scheme.upperBound
        else { return text }
        return String(text[..<scheme.upperBound]) + ":***" + String(text[at...])
    }

    public var description: String {
        if let masterName {
            return "redis-sentinel://\(sentinels.map(\.description).joined(separator: ","))/\(masterName)"
        }
        return "redis://\(host):\(port)/\(database)"
    }
}
