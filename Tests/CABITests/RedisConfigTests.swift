import CMicroSSE
import MicroSSECABI
import MicroSSETestSupport
import Testing

@Suite("C ABI: msse_config.redis_url")
struct RedisConfigTests {
    @Test("two C servers sharing one Redis: an event published on one reaches a subscriber of the other")
    func twoServersOneRedis() throws {
        let redis = try RedisServer()
        var servers: [OpaquePointer] = []
        defer { servers.forEach { msse_server_destroy($0) } }
        for _ in 0..<2 {
            var cfg = msse_config()
            msse_config_init(&cfg)
            cfg.port = 0
            cfg.heartbeat_seconds = 0
            var srv: OpaquePointer?
            let rc = redis.url.withCString { url in
                cfg.redis_url = url
                return msse_server_create(&cfg, &srv)
            }
            try #require(rc == MSSE_OK)
            let server = try #require(srv)
            servers.append(server)
            try #require(msse_server_start(server) == MSSE_OK)
        }
        let stream = try EventStreamClient(port: msse_server_port(servers[1]), path: "/events/news")
        #expect(stream.status == 200)
        // The subscription is registered once the stream's head has been sent.
        #expect(msse_publish(servers[0], "news", "greeting", nil, "hello", 5) == MSSE_OK)
        let event = try #require(try stream.next())
        #expect(event.data == "hello" && event.type == "greeting")
        #expect(event.lastEventID.contains("-"))  // a Redis stream id, shared by both servers
    }

    @Test("an unreachable Redis fails msse_server_start with MSSE_EUNAVAIL and a reason; a bad URL is MSSE_EINVAL")
    func unreachableAndInvalid() throws {
        let port = try freePort()
        var cfg = msse_config()
        msse_config_init(&cfg)
        cfg.port = 0
        var srv: OpaquePointer?
        let rc = "redis://127.0.0.1:\(port)".withCString { url in
            cfg.redis_url = url
            return msse_server_create(&cfg, &srv)
        }
        try #require(rc == MSSE_OK)
        let server = try #require(srv)
        defer { msse_server_destroy(server) }
        #expect(msse_server_start(server) == MSSE_EUNAVAIL)
        #expect(String(cString: msse_server_errmsg(server)).contains("cannot connect to Redis"))

        var bad: OpaquePointer?
        let rc2 = "http://nope".withCString { url in
            cfg.redis_url = url
            return msse_server_create(&cfg, &bad)
        }
        #expect(rc2 == MSSE_EINVAL)
        // Like sqlite3_open: the failed handle says why, and must be destroyed.
        #expect(String(cString: msse_server_errmsg(bad)).contains("redis_url"))
        msse_server_destroy(bad)
    }

    @Test("a history the Redis broker cannot keep is refused at create (MSSE_EINVAL), not clamped")
    func zeroHistoryWithRedis() throws {
        var cfg = msse_config()
        msse_config_init(&cfg)
        cfg.port = 0
        cfg.history_count = 0
        var srv: OpaquePointer?
        let rc = "redis://127.0.0.1:6379".withCString { url in
            cfg.redis_url = url
            return msse_server_create(&cfg, &srv)
        }
        #expect(rc == MSSE_EINVAL)
        #expect(String(cString: msse_server_errmsg(srv)).contains("historyCount must be at least 1 with redis"))
        msse_server_destroy(srv)
    }
}
