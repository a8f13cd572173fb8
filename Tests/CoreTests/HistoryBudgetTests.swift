import MicroSSECore
import MicroSSEWire
import Testing

#if canImport(Glibc)
    import CMalloc
    import Glibc
#endif

@Suite("Memory broker: one history budget for all channels")
struct HistoryBudgetTests {
    let clock = FakeClock(1_700_000_000_000_000)

    func broker(count: Int = 1_000, bytes: Int = 1 << 20, budget: Int) -> MemoryBroker {
        MemoryBroker(
            limits: .init(historyCount: count, historyBytes: bytes, memoryBytes: budget), now: clock.now)
    }

    @Test("200,000 one-byte publishes to distinct channels keep the accounted bytes and channels bounded")
    func distinctChannelsStayBounded() throws {
        let budget = 1 << 20
        let b = broker(budget: budget)
        var most = 0
        for i in 0..<200_000 {
            try b.publish("x", to: "c\(i)")
            if i % 1_000 == 0 {
                most = max(most, b.accountedBytes)
                #expect(b.accountedBytes <= budget)
            }
        }
        #expect(most <= budget)
        #expect(b.accountedBytes <= budget)
        // Each channel costs at least its log and one event's frame.
        let ceiling = budget / (HeapSize.channelLog + HeapSize.chunk(1))
        #expect(b.channelCount <= ceiling, "\(b.channelCount) channels kept")
        #expect(b.channelCount > 0)
    }

    @Test("publishes to one channel within its own limits never pile up past the budget either")
    func oneChannelStaysBounded() throws {
        let b = broker(count: 10, budget: 256 << 10)
        for i in 0..<100_000 { try b.publish(String(i), to: "a") }
        #expect(b.accountedBytes <= 256 << 10)
        #expect(b.channelCount == 1)
    }

    @Test("over the budget, the oldest event of all channels is evicted first")
    func evictsGlobalOldestFirst() throws {
        let script: [(String, String)] = [("a1", "a"), ("b1", "b"), ("c1", "c"), ("a2", "a"), ("b2", "b")]
        let padding = String(repeating: "-", count: 1_000)
        // 200 bytes short of what the five events cost together: one event (over 1 KB) must go,
        // and one is enough. (glibc may hand a frame 16 bytes more than another time, and the
        // frame's capacity follows: the margin covers it.)
        let probe = broker(budget: .max)
        for (data, channel) in script { try probe.publish(data + padding, to: channel) }
        let b = broker(budget: probe.accountedBytes - 200)
        var ids: [String] = []
        for (data, channel) in script { ids.append(try b.publish(data + padding, to: channel)) }
        let a1 = ids[0]
        // Resuming from before everything: what is still retained, in publish order.
        let sub = Subscriber(channels: ["a", "b", "c"], limit: 1 << 20)
        let before = HubID.encode(HubPosition(epoch: b.epoch, major: try #require(HubID.decode(a1)?.first).major - 1))
        #expect(b.subscribe(sub, after: before) == .gap(.evicted))
        let events = sub.receivedEvents()
        #expect(events.first?.type == "microsse.gap")
        #expect(events.dropFirst().map { String($0.data.prefix(2)) } == ["b1", "c1", "a2", "b2"])
    }

    @Test("a resume after global eviction gets the evicted gap and never a duplicate")
    func resumeAfterGlobalEviction() throws {
        let b = broker(budget: 64 << 10)
        let sub = Subscriber(channels: ["news"], limit: 1 << 20)
        _ = b.subscribe(sub, after: nil)
        var ids: [String] = []
        for i in 0..<20 { ids.append(try b.publish("n\(i)", to: "news")) }
        let seen = sub.receivedEvents()
        #expect(seen.count == 20)
        b.unsubscribe(sub)
        // Other channels push every event of `news` out of the budget.
        for i in 0..<2_000 { try b.publish(String(repeating: "x", count: 100), to: "other\(i % 7)") }
        let again = Subscriber(channels: ["news"], limit: 1 << 20)
        #expect(b.subscribe(again, after: ids[10]) == .gap(.evicted))
        let events = again.receivedEvents()
        #expect(events.map(\.type) == ["microsse.gap"])
        // A live event after the resume arrives once.
        let live = try b.publish("live", to: "news")
        #expect(again.receivedEvents().map(\.id) == [live])
    }

    @Test("a resume into a forgotten channel still reports what was evicted from it")
    func forgottenChannelKeepsFloor() throws {
        let b = broker(budget: 256 << 10)
        let first = try b.publish("one", to: "gone")
        try b.publish("two", to: "gone")
        for i in 0..<5_000 { try b.publish(String(repeating: "y", count: 50), to: "busy\(i)") }
        #expect(b.accountedBytes <= 256 << 10)
        let sub = Subscriber(channels: ["gone"], limit: 1 << 20)
        #expect(b.subscribe(sub, after: first) == .gap(.evicted))
        #expect(sub.receivedEvents().map(\.type) == ["microsse.gap"])
    }

    @Test("channels with no subscribers and nothing retained are forgotten; subscribed ones stay")
    func idleChannelsForgotten() throws {
        let b = broker(count: 0, budget: 1 << 20)
        for i in 0..<1_000 { try b.publish("x", to: "c\(i)") }
        #expect(b.channelCount == 0)
        let sub = Subscriber(channels: ["kept"], limit: 1 << 20)
        _ = b.subscribe(sub, after: nil)
        try b.publish("x", to: "kept")
        #expect(b.channelCount == 1)
        b.unsubscribe(sub)
        #expect(b.channelCount == 0)
        // What is left is the containers' storage alone.
        #expect(b.accountedBytes == b.containerBytes)
    }

    @Test("a channel under the budget still resumes exactly")
    func exactUnderBudget() throws {
        let b = broker(budget: 1 << 20)
        let one = try b.publish("1", to: "a")
        try b.publish("2", to: "a")
        let sub = Subscriber(channels: ["a"], limit: 1 << 20)
        #expect(b.subscribe(sub, after: one) == .exact)
        #expect(sub.receivedEvents().map(\.data) == ["2"])
    }
}

/// The budget's charges against what glibc's malloc really hands out (``HeapSize``): a charge
/// below the real size would let the history outgrow its budget.
@Suite("History budget: charges are at least the heap's real chunks")
struct HeapSizeTests {
    #if canImport(Glibc)
        /// The chunk glibc carved for the allocation at `p`: its usable size plus the size field
        /// (8 bytes, or 16 for a chunk mapped on its own, marked in the size field's bit 1).
        func chunk(_ p: UnsafeRawPointer) -> Int {
            let mapped = p.load(fromByteOffset: -8, as: UInt.self) & 2 != 0
            return malloc_usable_size(UnsafeMutableRawPointer(mutating: p)) + (mapped ? 16 : 8)
        }

        /// The chunk of a native array's buffer (its elements start 32 bytes in).
        func chunk<T>(of a: [T]) -> Int {
            a.withUnsafeBufferPointer { chunk(UnsafeRawPointer($0.baseAddress!) - 32) }
        }

        func chunk(of s: String) -> Int {
            var s = s
            return s.withUTF8 { chunk(UnsafeRawPointer($0.baseAddress!) - 32) }
        }

        func chunk<K, V>(of d: [K: V]) -> Int {
            chunk(unsafeBitCast(d, to: UnsafeRawPointer.self))
        }

        @Test("a channel's log")
        func channelLog() {
            let log = ChannelLog()
            let real = chunk(UnsafeRawPointer(Unmanaged.passUnretained(log).toOpaque()))
            #expect(HeapSize.channelLog >= real)
        }

        @Test("frames as the broker makes them, from one byte to 2 MiB (mapped on their own)")
        func frames() throws {
            for size in [1, 7, 30, 100, 1_000, 4_000, 70_000, 200_000, 1 << 20, 2 << 20] {
                let body = EventEncoder.encode(try Event(data: String(repeating: "x", count: size)))
                // The server-assigned `id:` line, then the body (MemoryBroker.publish).
                var line: [UInt8] = Array("id: ".utf8)
                line += String(UInt64(1_765_000_000_000_000) + UInt64(size)).utf8
                line.append(0x0A)
                let frame = line + body
                #expect(HeapSize.array(frame) >= chunk(of: frame), "\(size)-byte event")
                #expect(HeapSize.array(body) >= chunk(of: body), "\(size)-byte body")
            }
        }

        @Test("arrays grown one element at a time, by capacity")
        func arrays() {
            struct Slot {
                var a: UInt64 = 0
                var b: UInt64 = 0
                var name = ""
                var frame: [UInt8] = []
                var flag = false
            }
            var slots: [Slot] = []
            var words: [UInt64] = []
            for i in 0..<20_000 {
                slots.append(Slot())
                words.append(UInt64(i))
                if i % 97 == 0 || i < 64 {
                    #expect(HeapSize.array(slots) >= chunk(of: slots), "\(slots.count) slots")
                    #expect(HeapSize.array(words) >= chunk(of: words), "\(words.count) words")
                }
            }
        }

        @Test("strings as the transport makes them (ids and channel names), 16 to 300 bytes")
        func strings() throws {
            for n in [16, 17, 23, 31, 32, 33, 47, 48, 64, 100, 128, 300] {
                let bytes = Array(String(repeating: "k", count: n).utf8)
                let made = [
                    try #require(String(validating: bytes, as: UTF8.self)),
                    String(decoding: bytes, as: UTF8.self),
                    bytes.withUnsafeBufferPointer { b in
                        String(cString: Array(b) + [0])
                    },
                    String(("/events/" + String(decoding: bytes, as: UTF8.self)).split(separator: "/").last!),
                ]
                for s in made { #expect(HeapSize.string(s) >= chunk(of: s), "\(n)-byte string") }
            }
            #expect(HeapSize.string("fifteen-bytes!!") == 0)
        }

        @Test("dictionaries, by capacity: the channel table and caller-id index")
        func dictionaries() throws {
            var table: [ChannelName: (UInt64, UInt64, [UInt8], [UInt64], Int)] = [:]
            var index: [String: UInt64] = [:]
            for i in 0..<50_000 {
                table[try ChannelName("c\(i)")] = (0, 0, [], [], 0)
                index["caller-given-id-\(i)"] = UInt64(i)
                if i % 331 == 0 || i < 40 {
                    #expect(HeapSize.dictionary(table) >= chunk(of: table), "\(table.count) channels")
                    #expect(HeapSize.dictionary(index) >= chunk(of: index), "\(index.count) ids")
                }
            }
        }
    #endif

    @Test("a tiny channel costs what the heap holds for it: its log, history array and frame")
    func tinyChannelCharge() throws {
        let b = MemoryBroker(limits: .init(historyCount: 1_000, historyBytes: 1 << 20))
        let empty = b.accountedBytes - b.containerBytes
        try b.publish("x", to: "c1")
        let one = b.accountedBytes - b.containerBytes - empty
        // At least the real chunks: the log (96), one history slot (32 + 48 bytes: 96), the
        // frame (`id:` line and `data: x`, 30 bytes, capacity 40: 80); the dictionary slot and
        // the order entry are the containers'. At most a third more.
        let real = 96 + 96 + 80
        #expect(one >= real)
        #expect(one <= real * 4 / 3)
    }
}
