// Several Redis deployments (shards): placement, fan-out across shards and hubs, resume of a
// stream whose channels live on different shards (exact, `evicted` for a flushed shard's part,
// `unknown` for an id naming other shards), and the configuration's rules.
import Foundation
import MicroSSE
import MicroSSECore
import MicroSSERedis
import MicroSSETestSupport
import Synchronization
import Testing

/// A hub on `shards` (in that order) under `prefix`.
func makeShardedHub(_ shards: [RedisServer], prefix: String, history: Int = 1_000) throws -> Server {
    let urls = try shards.map { try RedisURL($0.url) }
    return try makeServer {
        $0.publishing = true
        $0.historyCount = history
        $0.redisShards = urls
        $0.redisKeyPrefix = prefix
    }
}

/// `count` channel names placed on `shard` among `of` shards.
func channels(on shard: Int, of count: Int, _ n: Int, tag: String = "c") -> [String] {
    var out: [String] = []
    var i = 0
    while out.count < n {
        let name = "\(tag)\(i)"
        if ShardedRedisBroker.shard(of: name, among: count) == shard { out.append(name) }
        i += 1
    }
    return out
}

/// The shards whose Redis holds `channel`'s stream under `prefix`.
func holders(_ shards: [RedisServer], prefix: String, channel: String) -> [Int] {
    shards.indices.filter { ask(shards[$0].port, ["EXISTS", "\(prefix):ch:\(channel)"]) == .integer(1) }
}

extension SeveralHubsTests {
    @Suite("Shards: several Redis deployments")
    struct Shards {
        @Test(
            "placement is a fixed function of the name; adding a shard moves about 1/(N+1) of the channels, only to it")
        func placement() {
            // Pinned: a change of the hash would move every deployment's channels.
            #expect(
                ["news", "prices", "chat", "a", "b"].map { ShardedRedisBroker.shard(of: $0, among: 2) } == [
                    1, 0, 1, 1, 1,
                ])
            #expect(
                ["news", "prices", "chat", "a", "b"].map { ShardedRedisBroker.shard(of: $0, among: 3) } == [
                    1, 0, 1, 1, 2,
                ])
            // The hub's reserved channels go by their family: Mercure's updates and its hubs'
            // announcements share one shard's log, whatever the shard count.
            for n in 2...16 {
                let family = ["mercure:updates", "mercure:hubs", "mercure:"].map {
                    ShardedRedisBroker.shard(of: $0, among: n)
                }
                #expect(Set(family).count == 1, "\(n) shards: \(family)")
            }
            let names = (0..<3_000).map { "channel-\($0)" }
            for n in 1...4 {
                let before = names.map { ShardedRedisBroker.shard(of: $0, among: n) }
                let after = names.map { ShardedRedisBroker.shard(of: $0, among: n + 1) }
                let moved = zip(before, after).filter { $0 != $1 }
                #expect(moved.allSatisfy { $0.1 == n }, "a channel moved between old shards")
                let share = Double(moved.count) / Double(names.count)
                #expect(
                    abs(share - 1 / Double(n + 1)) < 0.05, "\(moved.count) of \(names.count) moved from \(n) shards")
                for s in 0...n {
                    let here = Double(after.filter { $0 == s }.count) / Double(names.count)
                    #expect(abs(here - 1 / Double(n + 1)) < 0.05, "shard \(s) of \(n + 1) holds \(here)")
                }
            }
        }

        @Test(
            "2 and 3 shards, 2 hubs: every event reaches the other hub once, in order; each channel lives on its shard",
            arguments: [2, 3])
        func fanOut(shardCount: Int) throws {
            let shards = try (0..<shardCount).map { _ in try RedisServer() }
            let prefix = uniquePrefix("shards\(shardCount)")
            let one = try makeShardedHub(shards, prefix: prefix)
            defer { one.stop() }
            let two = try makeShardedHub(shards, prefix: prefix)
            defer { two.stop() }
            let names = (0..<shardCount).flatMap { channels(on: $0, of: shardCount, 2) }
            let all = try EventStreamClient(
                port: two.port, path: "/events?" + names.map { "channel=\($0)" }.joined(separator: "&"))
            let singles = try names.map { try EventStreamClient(port: two.port, path: "/events/\($0)") }
            try #require(eventually { two.statistics.clients == 1 + names.count })
            var published: [String: [String]] = [:]
            for i in 0..<(30 * names.count) {
                let channel = names[i % names.count]
                let id = try one.publish("\(channel) \(i)", to: channel)
                published[channel, default: []].append(id)
                #expect(HubID.decode(id)?.map(\.log) == [ShardedRedisBroker.shard(of: channel, among: shardCount)])
            }
            for (n, channel) in names.enumerated() {
                let got = try singles[n].events(30)
                #expect(got.compactMap(\.id) == published[channel], "\(channel): the publisher's ids, in order")
                #expect(
                    holders(shards, prefix: prefix, channel: channel) == [
                        ShardedRedisBroker.shard(of: channel, among: shardCount)
                    ])
            }
            let merged = try all.events(30 * names.count)
            for channel in names {
                let mine = merged.filter { $0.data.hasPrefix(channel + " ") }.map(\.data)
                #expect(
                    mine
                        == (0..<(30 * names.count)).filter { names[$0 % names.count] == channel }.map {
                            "\(channel) \($0)"
                        })
            }
            #expect(merged.allSatisfy { HubID.decode($0.id ?? "")?.map(\.log) == Array(0..<shardCount) })
        }

        @Test(
            "placement holds across hubs and restarts: a restarted hub resumes a stream of one channel from the old hub's id"
        )
        func placementAcrossRestarts() throws {
            let shards = try (0..<2).map { _ in try RedisServer() }
            let prefix = uniquePrefix("restart")
            let channel = channels(on: 1, of: 2, 1, tag: "r")[0]
            var first: Server? = try makeShardedHub(shards, prefix: prefix)
            let ids = try (0..<5).map { try first!.publish("e\($0)", to: channel) }
            first!.stop()
            first = nil
            let again = try makeShardedHub(shards, prefix: prefix)
            defer { again.stop() }
            try again.publish("e5", to: channel)
            #expect(holders(shards, prefix: prefix, channel: channel) == [1])
            let resumed = try EventStreamClient(
                port: again.port, path: "/events/\(channel)", headers: [("Last-Event-ID", ids[2])])
            #expect(resumed.head.header("MicroSSE-Gap") == nil)
            #expect(try resumed.events(3).map(\.data) == ["e3", "e4", "e5"])
        }

        @Test("a stream over channels on two shards resumes exactly on the other hub: no loss, no duplicate")
        func resumeAcrossShards() throws {
            let shards = try (0..<2).map { _ in try RedisServer() }
            let prefix = uniquePrefix("cross")
            let one = try makeShardedHub(shards, prefix: prefix)
            defer { one.stop() }
            let two = try makeShardedHub(shards, prefix: prefix)
            defer { two.stop() }
            let a = channels(on: 0, of: 2, 1, tag: "a")[0]
            let b = channels(on: 1, of: 2, 1, tag: "b")[0]
            let path = "/events?channel=\(a)&channel=\(b)"
            let live = try EventStreamClient(port: one.port, path: path)
            try #require(eventually { one.statistics.clients == 1 })
            for i in 0..<10 { try two.publish("e\(i)", to: i % 3 == 0 ? a : b) }
            let seen = try live.events(10)
            let order = seen.map(\.data)
            live.close()
            for i in 10..<20 { try two.publish("e\(i)", to: i % 3 == 0 ? a : b) }
            // From each of the first ten ids: exactly what followed it, per channel in order.
            for cut in [0, 4, 9] {
                let id = try #require(seen[cut].id)
                #expect(HubID.decode(id)?.map(\.log) == [0, 1], "\(id)")
                let resumed = try EventStreamClient(port: two.port, path: path, headers: [("Last-Event-ID", id)])
                #expect(resumed.head.header("MicroSSE-Gap") == nil)
                let got = try resumed.events(19 - cut).map(\.data)
                let expected = Array(order[(cut + 1)...]) + (10..<20).map { "e\($0)" }
                #expect(Set(got) == Set(expected) && got.count == expected.count, "from \(cut): \(got)")
                for channel in [a, b] {
                    let mine = { (e: [String]) in
                        e.filter { Int($0.dropFirst())! % 3 == 0 ? channel == a : channel == b }
                    }
                    #expect(mine(got) == mine(expected), "order within \(channel)")
                }
                #expect(try resumed.next(timeout: 0.3) == nil, "nothing more (no duplicate)")
            }
        }

        @Test(
            "resumes across two shards while both are published to: every event after the id once, in order per channel"
        )
        func resumeWhilePublishing() throws {
            let shards = try (0..<2).map { _ in try RedisServer() }
            let prefix = uniquePrefix("busy")
            let one = try makeShardedHub(shards, prefix: prefix)
            defer { one.stop() }
            let two = try makeShardedHub(shards, prefix: prefix)
            defer { two.stop() }
            let a = channels(on: 0, of: 2, 1, tag: "a")[0]
            let b = channels(on: 1, of: 2, 1, tag: "b")[0]
            let path = "/events?channel=\(a)&channel=\(b)"
            let name: @Sendable (Int) -> String = { i in "\(i % 2 == 0 ? "a" : "b")\(i)" }
            let live = try EventStreamClient(port: two.port, path: path)
            try #require(eventually { two.statistics.clients == 1 })
            try one.publish(name(0), to: a)
            var last = try #require(try live.next()?.id)
            live.close()
            let total = 2_000
            let done = DispatchSemaphore(value: 0)
            let publisher = Thread {
                for i in 1..<total { _ = try? one.publish(name(i), to: i % 2 == 0 ? a : b) }
                done.signal()
            }
            publisher.start()
            // Resumes from the last id seen, on either hub, a few events at a time, while the
            // publisher goes on.
            var got: [String] = []
            var rounds = 0
            while got.count < total - 1 && rounds < 1_000 {
                rounds += 1
                let hub = rounds % 2 == 0 ? one : two
                let s = try EventStreamClient(port: hub.port, path: path, headers: [("Last-Event-ID", last)])
                #expect(s.head.header("MicroSSE-Gap") == nil, "from \(last) (round \(rounds))")
                let batch = try s.events(min(13, total - 1 - got.count), timeout: 20)
                got += batch.map(\.data)
                last = try #require(batch.last?.id)
                s.close()
            }
            #expect(done.wait(timeout: .now() + 60) == .success)
            let expected = (1..<total).map(name)
            let missing = Set(expected).subtracting(got).count
            #expect(
                missing == 0 && got.count == expected.count, "\(got.count) of \(expected.count), \(missing) missing")
            for tag in ["a", "b"] {
                let inOrder = got.filter { $0.hasPrefix(tag) } == expected.filter { $0.hasPrefix(tag) }
                #expect(inOrder, "order within \(tag)")
            }
        }

        @Test(
            "one shard flushed: the stream gets evicted and that shard's retained events; the other shard's part stays exact"
        )
        func flushedShard() throws {
            let shards = try (0..<2).map { _ in try RedisServer() }
            let prefix = uniquePrefix("flush")
            let hub = try makeShardedHub(shards, prefix: prefix)
            defer { hub.stop() }
            let a = channels(on: 0, of: 2, 1, tag: "a")[0]
            let b = channels(on: 1, of: 2, 1, tag: "b")[0]
            let path = "/events?channel=\(a)&channel=\(b)"
            let live = try EventStreamClient(port: hub.port, path: path)
            try #require(eventually { hub.statistics.clients == 1 })
            try hub.publish("a0", to: a)
            try hub.publish("b0", to: b)
            let id = try #require(try live.events(2).last?.id)
            live.close()
            try hub.publish("a1", to: a)
            try hub.publish("b1", to: b)
            #expect(ask(shards[1].port, ["FLUSHALL"])?.text == "OK")
            try hub.publish("b2", to: b)
            try hub.publish("a2", to: a)
            let resumed = try EventStreamClient(port: hub.port, path: path, headers: [("Last-Event-ID", id)])
            #expect(resumed.head.header("MicroSSE-Gap") == "evicted")
            let got = try resumed.events(4)
            #expect(got.first?.type == "microsse.gap")
            let data = got.dropFirst().map(\.data)
            #expect(data.filter { $0.hasPrefix("a") } == ["a1", "a2"], "shard 0's part exact: \(data)")
            #expect(data.filter { $0.hasPrefix("b") } == ["b2"], "shard 1's retained events: \(data)")
            #expect(try resumed.next(timeout: 0.3) == nil)
        }

        @Test("an id whose shards do not match the stream's is unknown")
        func shardSetMismatch() throws {
            let shards = try (0..<3).map { _ in try RedisServer() }
            let hub = try makeShardedHub(shards, prefix: uniquePrefix("mismatch"))
            defer { hub.stop() }
            let a = channels(on: 0, of: 3, 1, tag: "a")[0]
            let b = channels(on: 1, of: 3, 1, tag: "b")[0]
            let c = channels(on: 2, of: 3, 1, tag: "c")[0]
            let onA = try hub.publish("x", to: a)
            let onB = try hub.publish("y", to: b)
            let pa = try #require(HubID.decode(onA)?.first)
            let pb = try #require(HubID.decode(onB)?.first)
            // One shard's position for a stream of two; shards 0 and 2; one shard too many; a label.
            let wrong = [
                onA,
                HubID.encode([pa, HubPosition(log: 2, epoch: pb.epoch, major: pb.major, minor: pb.minor)]),
                HubID.encode([pa, pb, HubPosition(log: 2, epoch: pb.epoch, major: 1, minor: 0)]),
                "a-label",
            ]
            for id in wrong {
                let s = try EventStreamClient(
                    port: hub.port, path: "/events?channel=\(a)&channel=\(b)", headers: [("Last-Event-ID", id)])
                #expect(s.head.header("MicroSSE-Gap") == "unknown", "\(id)")
            }
            // A stream of one channel given a position of a shard the cluster does not have: unknown.
            let beyond = HubID.encode(HubPosition(log: 5, epoch: pa.epoch, major: pa.major, minor: pa.minor))
            let s = try EventStreamClient(port: hub.port, path: "/events/\(c)", headers: [("Last-Event-ID", beyond)])
            #expect(s.head.header("MicroSSE-Gap") == "unknown")
            let right = try EventStreamClient(
                port: hub.port, path: "/events?channel=\(a)&channel=\(b)",
                headers: [("Last-Event-ID", HubID.encode([pa, pb]))])
            #expect(right.head.header("MicroSSE-Gap") == nil)
        }

        @Test(
            "a third shard added: a moved channel resumes exactly from its old shard's id; a hub with the old list refuses to start"
        )
        func shardAdded() throws {
            let shards = try (0..<3).map { _ in try RedisServer() }
            let prefix = uniquePrefix("added")
            // A channel on shard 0 or 1 of two that moves to shard 2 of three.
            let moved = (0...).lazy.map { "m\($0)" }.first { ShardedRedisBroker.shard(of: $0, among: 3) == 2 }!
            let from = ShardedRedisBroker.shard(of: moved, among: 2)
            var before: Server? = try makeShardedHub(Array(shards[..<2]), prefix: prefix)
            let old = try (1...3).map { try before!.publish("m\($0)", to: moved) }
            before!.stop()
            before = nil
            let after = try makeShardedHub(shards, prefix: prefix)
            defer { after.stop() }
            let new = try (4...5).map { try after.publish("m\($0)", to: moved) }
            #expect(HubID.decode(old[0])?.first?.log == from && HubID.decode(new[0])?.first?.log == 2)
            let resumed = try EventStreamClient(
                port: after.port, path: "/events/\(moved)", headers: [("Last-Event-ID", old[0])])
            #expect(resumed.head.header("MicroSSE-Gap") == nil)
            let got = try resumed.events(4)
            #expect(got.map(\.data) == ["m2", "m3", "m4", "m5"])
            #expect(got.compactMap(\.id) == Array(old[1...]) + new, "each event's own id")
            #expect(try resumed.next(timeout: 0.3) == nil)
            // From the old shard's last id: only the new shard's events.
            let fromLast = try EventStreamClient(
                port: after.port, path: "/events/\(moved)", headers: [("Last-Event-ID", old[2])])
            #expect(try fromLast.events(2).map(\.data) == ["m4", "m5"])
            #expect(throws: MicroSSEError.self) { try makeShardedHub(Array(shards[..<2]), prefix: prefix) }
        }
    }
}
