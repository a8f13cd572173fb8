import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Testing

extension SeveralHubsTests {
    @Suite("The publish script, run by its hash")
    struct PublishScript {
        @Test("publishes run the script with EVALSHA, and load it again after Redis forgot it (SCRIPT FLUSH)")
        func evalshaSurvivesAFlush() throws {
            let redis = try RedisServer()
            let hub = try makeHub(redis, prefix: uniquePrefix("sha"))
            defer { hub.stop() }
            let stream = try EventStreamClient(port: hub.port, path: "/events/s")
            let first = try hub.publish("one", to: "s")
            let admin = try RedisConnection(url: try RedisURL(redis.url), timeoutMilliseconds: 2_000)
            let scripts = try admin.command(["INFO", "memory"]).text ?? ""
            #expect(scripts.contains("number_of_cached_scripts:1"), "the script was loaded once")
            #expect(try admin.command(["SCRIPT", "FLUSH"]).text == "OK")
            let second = try hub.publish("two", to: "s")
            #expect(try stream.events(2).map(\.id) == [first, second])
            let third = try postEvent(port: hub.port, channel: "s", data: "three")
            #expect(third.status == 202)
            #expect(try stream.next()?.data == "three")
        }
    }
}
