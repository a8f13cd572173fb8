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
            redisSettings = newValue.map {
                RedisSettings(url: $0, ttl: redisChannelTTLSeconds, prefix: redisKeyPrefix, clock: redisSettings?.clock)
            }
        }
    }

    /// Seconds after its last publish that a channel's history expires in Redis. Default 86,400.
    /// Set it after ``redis`` (it belongs to the Redis settings, which setting ``redis`` creates).
    public var redisChannelTTLSeconds: Int {
        get { redisSettings?.ttl ?? RedisSettings.defaultTTL }
        set { redisSettings?.ttl = newValue }
    }

    /// Prefix of every Redis key the hub uses (`PREFIX:all`, `PREFIX:ch:NAME`, `PREFIX:since`).
    /// Default `microsse`. Set it after ``redis``.
    public var redisKeyPrefix: String {
        get { redisSettings?.prefix ?? RedisSettings.defaultPrefix }
        set { redisSettings?.prefix = newValue }
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
    /// system's. Tests move it instead of waiting. Set it after ``redis``.
    package var redisWallClock: (@Sendable () -> UInt64)? {
        get { redisSettings?.clock }
        set { redisSettings?.clock = newValue }
    }

    private var redisSettings: RedisSettings? {
        get { brokerFactory as? RedisSettings }
        set { brokerFactory = newValue }
    }
}

/// The Redis settings of a configuration, and the factory of its broker.
private struct RedisSettings: BrokerFactory {
    static let defaultTTL = 86_400
    static let defaultPrefix = "microsse"
    static let defaultStreamLength = 100_000

    var url: RedisURL
    var ttl: Int
    var prefix: String
    var clock: (@Sendable () -> UInt64)?
    var streamLength = defaultStreamLength

    func makeBroker(
        historyCount: Int, historyBytes: Int, historyTTLSeconds: Int, log: @escaping @Sendable (String) -> Void
    ) -> any EventBroker {
        var settings = RedisBroker.Settings(
            url: url, prefix: prefix, historyCount: max(1, historyCount), historyBytes: historyBytes,
            globalLength: streamLength, channelTTLSeconds: max(1, ttl),
            // Asking local sentinels again is cheap, and a failover should cost little more
            // than the sentinels' own detection and promotion.
            maxBackoffMilliseconds: url.usesSentinel ? 500 : 2_000,
            workerCount: url.workers, workQueueCapacity: url.queueLimit, historyTTLSeconds: max(0, historyTTLSeconds))
        if let clock { settings.wallClock = clock }
        return RedisBroker(settings: settings, log: log)
    }
}
