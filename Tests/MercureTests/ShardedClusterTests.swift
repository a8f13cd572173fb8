import Foundation
import MicroSSE
import MicroSSEMercure
import MicroSSERedis
import MicroSSETestSupport
import Testing

@Suite("Mercure: clustered over Redis shards", .serialized)
struct ShardedClusterTests {
    @Test("two hubs on two shards: an update published to hub A reaches hub B; a resume on B from A's id is exact")
    func publishOnAReceiveOnB() throws {
        let shards = try (0..<2).map { _ in try RedisServer() }
        let prefix = clusterPrefix("shards")
        let hub = { () throws -> Server in
            try mercureHub {
                $0.redisShards = shards.compactMap { try? RedisURL($0.url) }
                $0.redisKeyPrefix = prefix
            }
        }
        let a = try hub()
        defer { a.stop() }
        let b = try hub()
        defer { b.stop() }
        let onB = try subscribe(b, [("match", "*")])
        defer { onB.close() }
        let publisher = token08(publish: ["*"])
        var ids: [String] = []
        for i in 0..<3 {
            let r = try publish(a, [("topic", "https://example.com/books/\(i)"), ("data", "u\(i)")], token: publisher)
            #expect(r.status == 200)
            ids.append(r.text)
        }
        #expect(try onB.events(3).map(\.id) == ids)
        let resumed = try subscribe(b, [("match", "*")], headers: [("Last-Event-ID", ids[0])])
        defer { resumed.close() }
        #expect(try resumed.events(2).map(\.data) == ["u1", "u2"])
    }
}
