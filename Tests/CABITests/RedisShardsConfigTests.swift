import CMicroSSE
import MicroSSECABI
import MicroSSETestSupport
import Testing

/// `msse_server_create` with `redis_url` set to `urls`; returns the code and the handle.
private func create(_ urls: String) -> (Int32, OpaquePointer?) {
    var cfg = msse_config()
    msse_config_init(&cfg)
    cfg.port = 0
    cfg.heartbeat_seconds = 0
    var srv: OpaquePointer?
    let rc = urls.withCString { url in
        cfg.redis_url = url
        return msse_server_create(&cfg, &srv)
    }
    return (rc, srv)
}

@Suite("C ABI: msse_config.redis_url with several shards")
struct RedisShardsConfigTests {
    @Test(
        "two C servers on two shards (URLs separated by spaces): events of channels on either shard reach the other server"
    )
    func twoServersTwoShards() throws {
        let shards = try (0..<2).map { _ in try RedisServer() }
        var servers: [OpaquePointer] = []
        defer { servers.forEach { msse_server_destroy($0) } }
        for _ in 0..<2 {
            let (rc, srv) = create("  \(shards[0].url)   \(shards[1].url) ")
            try #require(rc == MSSE_OK)
            let server = try #require(srv)
            servers.append(server)
            try #require(msse_server_start(server) == MSSE_OK)
        }
        // "prices" lives on shard 0 of two, "news" on shard 1 (pinned by ShardsTests.placement).
        let stream = try EventStreamClient(
            port: msse_server_port(servers[1]), path: "/events?channel=news&channel=prices")
        #expect(stream.status == 200)
        #expect(msse_publish(servers[0], "news", nil, nil, "on one", 6) == MSSE_OK)
        #expect(msse_publish(servers[0], "prices", nil, nil, "on zero", 7) == MSSE_OK)
        let got = try stream.events(2)
        #expect(Set(got.map(\.data)) == ["on one", "on zero"])
        #expect(
            got.allSatisfy { $0.lastEventID.hasPrefix("~1.0.") && $0.lastEventID.contains(".1.") },
            "\(got.map(\.lastEventID))")
    }

    @Test("the same deployment twice, 17 URLs, a bad one among them, or only spaces: MSSE_EINVAL with the reason")
    func refused() {
        let cases = [
            ("redis://127.0.0.1:7001 redis://127.0.0.1:7001/0", "are the same deployment"),
            ((1...17).map { "redis://127.0.0.1:\(7000 + $0)" }.joined(separator: " "), "at most 16 Redis shards"),
            ("redis://127.0.0.1:7001 http://nope", "redis_url"),
            ("   ", "no URL"),
        ]
        for (urls, reason) in cases {
            let (rc, srv) = create(urls)
            #expect(rc == MSSE_EINVAL, "\(urls)")
            #expect(
                String(cString: msse_server_errmsg(srv)).contains(reason), "\(String(cString: msse_server_errmsg(srv)))"
            )
            msse_server_destroy(srv)
        }
    }
}
