import MicroSSE
import MicroSSERedis
import Testing

/// The Redis settings are kept whatever order they are set in, and ``ServerConfiguration/validate()``
/// refuses what the Redis broker cannot honour (nothing is dropped or clamped). No Redis needed.
@Suite("Redis settings")
struct RedisSettingsTests {
    let url = try! RedisURL("redis://127.0.0.1:6379")

    @Test("settings made before redis are kept")
    func orderDoesNotMatter() throws {
        var config = ServerConfiguration()
        config.redisKeyPrefix = "before"
        config.redisChannelTTLSeconds = 60
        config.redis = url
        #expect(config.redisKeyPrefix == "before")
        #expect(config.redisChannelTTLSeconds == 60)
        try config.validate()
    }

    @Test("validate() refuses Redis settings it cannot honour, naming the field")
    func refused() {
        let cases: [(String, (inout ServerConfiguration) -> Void)] = [
            (
                "redisChannelTTLSeconds and redisKeyPrefix need redis (set redis as well)",
                { $0.redisKeyPrefix = "alone" }
            ),
            (
                "redisChannelTTLSeconds and redisKeyPrefix need redis (set redis as well)",
                { $0.redisChannelTTLSeconds = 5 }
            ),
            (
                "redisChannelTTLSeconds must be at least 1",
                { [url] in
                    $0.redis = url
                    $0.redisChannelTTLSeconds = 0
                }
            ),
            (
                "redisKeyPrefix must be non-empty visible ASCII: \"\"",
                { [url] in
                    $0.redis = url
                    $0.redisKeyPrefix = ""
                }
            ),
            (
                "redisKeyPrefix must be non-empty visible ASCII: \"a b\"",
                { [url] in
                    $0.redisKeyPrefix = "a b"
                    $0.redis = url
                }
            ),
            (
                "historyCount must be at least 1 with redis (a channel's stream keeps its oldest entry as the resume boundary)",
                { [url] in
                    $0.redis = url
                    $0.historyCount = 0
                }
            ),
        ]
        for (reason, configure) in cases {
            var config = ServerConfiguration()
            configure(&config)
            #expect(throws: MicroSSEError(.invalidArgument, reason)) { try config.validate() }
        }
    }

    @Test("redis = nil forgets every Redis setting")
    func clearing() throws {
        var config = ServerConfiguration()
        config.redis = url
        config.redisKeyPrefix = "p"
        config.redis = nil
        #expect(config.redisKeyPrefix == "microsse")
        try config.validate()
    }
}
