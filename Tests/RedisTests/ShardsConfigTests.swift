// The shards' configuration: Swift's validate(), `microsse serve --redis` repeated (and
// MICROSSE_REDIS), and the list's order as the shards' identity.
import Foundation
import MicroSSE
import MicroSSECore
import MicroSSERedis
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension SeveralHubsTests.Shards {
    @Test("the list's order is the shards' identity: a hub listing them in another order refuses to start")
    func reorderedList() throws {
        let shards = try (0..<2).map { _ in try RedisServer() }
        let prefix = uniquePrefix("order")
        let hub = try makeShardedHub(shards, prefix: prefix)
        hub.stop()
        do {
            let wrong = try makeShardedHub(shards.reversed(), prefix: prefix)
            wrong.stop()
            Issue.record("a reordered list started")
        } catch {
            #expect("\(error)".contains("listed as shard"), "\(error)")
        }
        let again = try makeShardedHub(shards, prefix: prefix)
        again.stop()
    }

    @Test("configuration: the same deployment twice, more than 16, or settings without a URL are refused")
    func configuration() throws {
        var config = ServerConfiguration()
        config.redisShards = [try RedisURL("redis://h:1"), try RedisURL("redis://H:1/0")]
        #expect(throws: MicroSSEError.self) { try config.validate() }
        config.redisShards = [try RedisURL("redis://h:1"), try RedisURL("redis://h:1/1")]
        try config.validate()
        #expect(config.redis == (try RedisURL("redis://h:1")))
        config.redisShards = [
            try RedisURL("redis-sentinel://s:1,t:2/m"), try RedisURL("redis-sentinel://t:2,s:1/m"),
        ]
        do {
            try config.validate()
            Issue.record("the same sentinel deployment twice was accepted")
        } catch {
            #expect(error.message.contains("shards 0 and 1 are the same deployment"), "\(error.message)")
        }
        config.redisShards = try (0..<17).map { try RedisURL("redis://h:\($0 + 1)") }
        do {
            try config.validate()
            Issue.record("17 shards were accepted")
        } catch {
            #expect(error.message.contains("at most 16 Redis shards"), "\(error.message)")
        }
        config.redisShards = try (0..<16).map { try RedisURL("redis://h:\($0 + 1)") }
        try config.validate()
        config.redisShards = []
        #expect(config.redis == nil)
    }

    @Test("microsse serve: --redis repeated, and MICROSSE_REDIS with spaces; a duplicate is refused with a reason")
    func binary() throws {
        for fromEnvironment in [false, true] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: microsseExecutable())
            let urls = ["redis://127.0.0.1:1", "redis://127.0.0.1:1/0"]
            p.arguments = ["serve", "--port", "0"] + (fromEnvironment ? [] : urls.flatMap { ["--redis", $0] })
            var environment = ProcessInfo.processInfo.environment
            environment["MICROSSE_REDIS"] = fromEnvironment ? urls.joined(separator: " ") : nil
            p.environment = environment
            let errors = Pipe()
            p.standardOutput = FileHandle.nullDevice
            p.standardError = errors
            try p.run()
            let exited = eventually(timeout: 30) { !p.isRunning }
            if !exited { p.terminate() }
            p.waitUntilExit()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(exited && p.terminationStatus != 0)
            #expect(text.contains("shards 0 and 1 are the same deployment"), "\(text)")
        }
        let shards = try (0..<2).map { _ in try RedisServer() }
        let hub = try ServerProcess(
            ["serve", "--port", "0", "--publish-token", "t"] + shards.flatMap { ["--redis", $0.url] })
        defer { hub.signal(SIGKILL) }
        let channel = channels(on: 1, of: 2, 1)[0]
        let r = try postEvent(port: hub.port, channel: channel, data: "x", headers: [("Authorization", "Bearer t")])
        #expect(r.status == 202, "\(r.status) \(r.text)")
        #expect(holders(shards, prefix: "microsse", channel: channel) == [1])
    }
}
