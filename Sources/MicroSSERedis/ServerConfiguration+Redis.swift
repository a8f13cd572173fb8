import MicroSSE
import MicroSSECore

/// Several hubs through Redis: `import MicroSSERedis` and set ``MicroSSE/ServerConfiguration/redis``.
/// Only programs that import this module link hiredis.
extension ServerConfiguration {
    /// Share channels, ids and history with other hubs through Redis Streams (several hubs
    /// behind a load balancer). nil keeps everything in this process. Default nil.
    ///
    /// ``MicroSSE/ServerConfiguration/historyTTLSeconds`` applies to it too.
    public var redis: RedisURL? {
        get { redisSettings?.url }
        set {
            if let newValue {
                var settings = redisSettings ?? RedisSettings()
                settings.url = newValue
                redisSettings = settings
            } else {
                redisSettings = nil
            }
        }
    }

    /// Seconds after its last publish that a channel's history expires in Redis, at least 1.
    /// Default 86,400. Set before or after ``redis``; ``MicroSSE/ServerConfiguration/validate()``
    /// refuses it without ``redis``.
    public var redisChannelTTLSeconds: Int {
        get { redisSettings?.ttl ?? RedisSettings.defaultTTL }
        set { modifyRedisSettings { $0.ttl = newValue } }
    }

    /// Prefix of every Redis key the hub uses (`PREFIX:all`, `PREFIX:ch:NAME`, `PREFIX:since`):
    /// non-empty, without spaces or control characters. Default `microsse`. Set before or after
    /// ``redis``; ``MicroSSE/ServerConfiguration/validate()`` refuses it without ``redis``.
    public var redisKeyPrefix: String {
        get { redisSettings?.prefix ?? RedisSettings.defaultPrefix }
        set { modifyRedisSettings { $0.prefix = newValue } }
    }

    /// Entries the global stream `PREFIX:all` keeps (about: it is trimmed with `MAXLEN ~`). Every
    /// hub's reader follows it, so a hub that stalls for more publishes than this loses its
    /// place: its open streams get the gap signal (see docs/REDIS.md). Default 100,000; at least
    /// 100. Set it after ``redis``.
    public var redisStreamLength: Int {
        get { redisSettings?.streamLength ?? RedisSettings.defaultStreamLength }
        set { redisSettings?.streamLength = newValue }
    }

    /// The wall clock (milliseconds) that ages the Redis history for the history TTL; nil = the
    /// system's. Tests move it instead of waiting.
    package var redisWallClock: (@Sendable () -> UInt64)? {
        get { redisSettings?.clock }
        set { modifyRedisSettings { $0.clock = newValue } }
    }

    private var redisSettings: RedisSettings? {
        get { brokerFactory as? RedisSettings }
        set { brokerFactory = newValue }
    }

    /// Applies `change` to the Redis settings, creating them (without a URL) when ``redis`` is not
    /// set yet, so a setting made before ``redis`` is kept rather than dropped.
    private mutating func modifyRedisSettings(_ change: (inout RedisSettings) -> Void) {
        var settings = redisSettings ?? RedisSettings()
        change(&settings)
        redisSettings = settings
    }
}

/// The Redis settings of a configuration, and the factory of its broker.
private struct RedisSettings: BrokerFactory, ConfigurationValidating {
    static let defaultTTL = 86_400
    static let defaultPrefix = "microsse"
    static let defaultStreamLength = 100_000

    /// nil while only other Redis settings were made: ``validate(_:)`` refuses it.
    var url: RedisURL?
    var ttl = defaultTTL
    var prefix = defaultPrefix
    var clock: (@Sendable () -> UInt64)?
    var streamLength = defaultStreamLength

    func validate(_ configuration: ServerConfiguration) throws(MicroSSEError) {
        guard url != nil else {
            throw MicroSSEError(
                .invalidArgument, "redisChannelTTLSeconds and redisKeyPrefix need redis (set redis as well)")
        }
        guard ttl >= 1 else { throw MicroSSEError(.invalidArgument, "redisChannelTTLSeconds must be at least 1") }
        guard !prefix.isEmpty, prefix.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw MicroSSEError(
                .invalidArgument, "redisKeyPrefix must be non-empty visible ASCII: \(prefix.debugDescription)")
        }
        guard configuration.historyCount >= 1 else {
            throw MicroSSEError(
                .invalidArgument,
                "historyCount must be at least 1 with redis (a channel's stream keeps its oldest entry as the resume boundary)"
            )
        }
    }

    func makeBroker(
        historyCount: Int, historyBytes: Int, historyTTLSeconds: Int, log: @escaping @Sendable (String) -> Void
    ) -> any EventBroker {
        makeBroker(
            historyCount: historyCount, historyBytes: historyBytes, historyMemoryBytes: 0,
            historyTTLSeconds: historyTTLSeconds, log: log)
    }

    func makeBroker(
        historyCount: Int, historyBytes: Int, historyMemoryBytes: Int, historyTTLSeconds: Int,
        log: @escaping @Sendable (String) -> Void
    ) -> any EventBroker {
        guard let url else {
            // Only a configuration validate() refuses gets here (a server made without
            // validating): it never starts, so no Redis broker is made for it.
            return MemoryBroker(limits: .init(historyCount: historyCount, historyBytes: historyBytes))
        }
        var settings = RedisBroker.Settings(
            url: url, prefix: prefix, historyCount: historyCount, historyBytes: historyBytes,
            globalLength: streamLength, channelTTLSeconds: ttl,
            // Asking local sentinels again is cheap, and a failover should cost little more
            // than the sentinels' own detection and promotion.
            maxBackoffMilliseconds: url.usesSentinel ? 500 : 2_000,
            workerCount: url.workers, workQueueCapacity: url.queueLimit, historyTTLSeconds: historyTTLSeconds)
        settings.memoryBytes = historyMemoryBytes
        if let clock { settings.wallClock = clock }
        return RedisBroker(settings: settings, log: log)
    }
}
