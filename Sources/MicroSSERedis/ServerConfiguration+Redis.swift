import MicroSSE
import MicroSSECore

/// Several hubs through Redis: `import MicroSSERedis` and set ``MicroSSE/ServerConfiguration/redis``.
/// Only programs that import this module link hiredis.
extension ServerConfiguration {
    /// Share channels, ids and history with other hubs through Redis Streams (several hubs
    /// behind a load balancer). nil keeps everything in this process. Default nil.
    ///
    /// ``MicroSSE/ServerConfiguration/historyTTLSeconds`` applies to it too.
    /// With several deployments (``redisShards``), the first.
    public var redis: RedisURL? {
        get { redisSettings?.urls.first }
        set {
            if let newValue {
                var settings = redisSettings ?? RedisSettings()
                settings.urls = [newValue]
                redisSettings = settings
            } else {
                redisSettings = nil
            }
        }
    }

    /// Several Redis deployments (shards), each a `redis://` or `redis-sentinel://` URL with its
    /// own options: every channel lives on one of them, placed by a stable hash of its name, and
    /// every hub reads them all (see docs/REDIS.md, "Shards"). The order is the shards' identity:
    /// list them in the same order on every hub, and add new ones at the end. One URL is the same
    /// as ``redis``; empty clears both. ``MicroSSE/ServerConfiguration/validate()`` refuses the
    /// same deployment twice and more than ``maxRedisShards``.
    public var redisShards: [RedisURL] {
        get { redisSettings?.urls ?? [] }
        set {
            if newValue.isEmpty {
                redisSettings = nil
            } else {
                var settings = redisSettings ?? RedisSettings()
                settings.urls = newValue
                redisSettings = settings
            }
        }
    }

    /// The most Redis deployments ``redisShards`` may list (a stream's id holds one position per
    /// shard it reads).
    public static let maxRedisShards = HubID.maxLogs

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

    /// Empty while only other Redis settings were made: ``validate(_:)`` refuses it.
    var urls: [RedisURL] = []
    var ttl = defaultTTL
    var prefix = defaultPrefix
    var clock: (@Sendable () -> UInt64)?
    var streamLength = defaultStreamLength

    func validate(_ configuration: ServerConfiguration) throws(MicroSSEError) {
        guard !urls.isEmpty else {
            throw MicroSSEError(
                .invalidArgument, "redisChannelTTLSeconds and redisKeyPrefix need redis (set redis as well)")
        }
        guard urls.count <= ServerConfiguration.maxRedisShards else {
            throw MicroSSEError(
                .invalidArgument,
                "at most \(ServerConfiguration.maxRedisShards) Redis shards (got \(urls.count))")
        }
        var seen: [String: Int] = [:]
        for (n, url) in urls.enumerated() {
            if let first = seen.updateValue(n, forKey: url.deploymentIdentity) {
                throw MicroSSEError(
                    .invalidArgument, "Redis shards \(first) and \(n) are the same deployment (\(url)): list each once")
            }
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
        guard !urls.isEmpty else {
            // Only a configuration validate() refuses gets here (a server made without
            // validating): it never starts, so no Redis broker is made for it.
            return MemoryBroker(limits: .init(historyCount: historyCount, historyBytes: historyBytes))
        }
        if urls.count == 1 {
            return broker(urls[0], shard: nil, historyCount, historyBytes, historyMemoryBytes, historyTTLSeconds, log)
        }
        let directory = ShardDirectory()
        // The budget bounds the cluster's Redis memory: each shard keeps its share (channels are
        // spread evenly by the hash; 0 leaves the bound off).
        let share = historyMemoryBytes > 0 ? max(1, historyMemoryBytes / urls.count) : 0
        return ShardedRedisBroker(
            shards: urls.enumerated().map { n, url in
                broker(
                    url, shard: n, historyCount, historyBytes, share, historyTTLSeconds,
                    directory: directory
                ) {
                    log("Redis shard \(n): \($0)")
                }
            }, directory: directory)
    }

    private func broker(
        _ url: RedisURL, shard: Int?, _ historyCount: Int, _ historyBytes: Int, _ historyMemoryBytes: Int,
        _ historyTTLSeconds: Int, directory: ShardDirectory? = nil, _ log: @escaping @Sendable (String) -> Void
    ) -> RedisBroker {
        var settings = RedisBroker.Settings(
            url: url, prefix: prefix, historyCount: historyCount, historyBytes: historyBytes,
            globalLength: streamLength, channelTTLSeconds: ttl,
            // Asking local sentinels again is cheap, and a failover should cost little more
            // than the sentinels' own detection and promotion.
            maxBackoffMilliseconds: url.usesSentinel ? 500 : 2_000,
            workerCount: url.workers, workQueueCapacity: url.queueLimit, historyTTLSeconds: historyTTLSeconds)
        settings.memoryBytes = historyMemoryBytes
        if let clock { settings.wallClock = clock }
        settings.shard = shard
        settings.shardCount = shard == nil ? 1 : urls.count
        settings.directory = directory
        return RedisBroker(settings: settings, log: log)
    }
}
