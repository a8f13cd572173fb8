import Dispatch
import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

@testable import MicroSSETransport

#if canImport(Glibc)
    import Glibc
#endif

/// The heartbeat table: the ticker's pass writes a heartbeat to every idle stream's socket
/// without a section of the stream's own, never while anything else writes to that socket.
@Suite("Heartbeat slots")
struct HeartbeatSlotsTests {
    let heartbeat = Frame(bytes: Array(":\n\n".utf8), isEvent: false)

    /// A table whose writer records "hb" per heartbeat and answers `answer` (then `.written`).
    func table(_ wire: Wire, answer: ChunkWrite = .written) -> HeartbeatSlots {
        let slots = HeartbeatSlots()
        let next = Mutex(answer)
        slots.setWriter { fd, _ in
            #expect(fd == 7)
            let result = next.withLock { r in
                defer { r = .written }
                return r
            }
            if result != .unavailable && result != .failed { wire.append("hb") }
            return result
        }
        return slots
    }

    /// A suspended reader of `log` on `connection` (with a slot in its table).
    func idleReader(_ log: ChannelLog, _ connection: SlotConnection) -> Subscriber {
        let sub = Subscriber(channels: ["c"], limit: 1 << 16)
        connection.bind(sub)
        sub.attach(log: log)
        #expect(Self.read(sub, max: 4_096) == .suspend)
        return sub
    }

    @Test("an idle stream gets its heartbeat from the pass alone; one active since the last pass gets none")
    func idleAndActive() {
        let wire = Wire()
        let slots = table(wire)
        let log = ChannelLog()
        let connection = Connection(wire, slots)
        let sub = idleReader(log, connection)
        #expect(slots.heartbeat(heartbeat) == 0)
        #expect(wire.all.isEmpty, "opened since the previous pass: none")
        slots.heartbeat(heartbeat)
        slots.heartbeat(heartbeat)
        #expect(wire.all == ["hb", "hb"])
        // An event since the last pass: no heartbeat at the next one, one at the pass after.
        var fanOut = LogFanOut()
        fanOut.append(frame("data: e\n\n"), to: log, readers: [sub])
        fanOut.finish()
        var scratch = [UInt8](repeating: 0, count: 4_096)
        #expect(!scratch.withUnsafeMutableBytes { sub.flush(into: $0) })
        slots.heartbeat(heartbeat)
        #expect(wire.all == ["hb", "hb", "data: e\n\n"])
        slots.heartbeat(heartbeat)
        #expect(wire.all.last == "hb")
        // Bytes pending: no heartbeat.
        sub.enqueue(frame("data: own\n\n"))
        let count = wire.all.count
        slots.heartbeat(heartbeat)
        slots.heartbeat(heartbeat)
        #expect(wire.all.count == count)
        connection.close()
        #expect(slots.count == 0)
    }

    @Test("a heartbeat cut short: its rest goes out before anything else")
    func restFirst() {
        let wire = Wire()
        let slots = table(wire, answer: ChunkWrite.partial(rest: Array("\n\r\n".utf8)))
        let connection = Connection(wire, slots)
        let sub = idleReader(ChannelLog(), connection)
        slots.heartbeat(heartbeat)
        slots.heartbeat(heartbeat)
        #expect(wire.all == ["hb", "rest:\n\r\n"])
        #expect(sub.pendingBytes == 0 && connection.resumes.load(ordering: .relaxed) == 0)
        connection.close()
    }

    @Test("a socket that takes nothing gets the heartbeat queued and resumed; a failed write fails the stream")
    func slowPaths() {
        let wire = Wire()
        let slots = table(wire, answer: .unavailable)
        let connection = Connection(wire, slots)
        let sub = idleReader(ChannelLog(), connection)
        slots.heartbeat(heartbeat)
        slots.heartbeat(heartbeat)
        #expect(connection.resumes.load(ordering: .relaxed) == 1)
        var taken: [UInt8] = []
        #expect(Self.read(sub, into: &taken) == .wrote(bytes: 3, events: 0))
        #expect(taken == Array(":\n\n".utf8))
        let failing = table(wire, answer: .failed)
        let otherConnection = Connection(wire, failing)
        let other = idleReader(ChannelLog(), otherConnection)
        failing.heartbeat(heartbeat)
        failing.heartbeat(heartbeat)
        #expect(!other.isOpen)
        connection.close()
        otherConnection.close()
    }

    /// A connection the table cannot write to (TLS, HTTP/1.0).
    final class ReaderOnlyConnection: SlotConnection, @unchecked Sendable {
        let resumes = Atomic<Int>(0)
        override func resume() { resumes.add(1, ordering: .relaxed) }
    }

    /// The order of resumes, and how many of `streams` had a heartbeat queued at each.
    final class ResumeLog: Sendable {
        let resumes = Mutex<[(index: Int, queued: Int)]>([])
        let streams = Mutex<[Subscriber]>([])
    }

    /// A stream the table cannot write to, whose resumes go to a shared log.
    final class CountingConnection: SlotConnection, @unchecked Sendable {
        let index: Int
        let log: ResumeLog
        init(_ index: Int, _ log: ResumeLog, _ slots: HeartbeatSlots) {
            (self.index, self.log) = (index, log)
            super.init(slots)
        }
        override func resume() {
            let queued = log.streams.withLock { $0 }.filter { $0.pendingBytes > 0 }.count
            log.resumes.withLock { $0.append((index, queued)) }
        }
    }

    @Test("the pass queues the heartbeats it cannot write, then resumes those streams back to back, each once")
    func batchedResumes() {
        let slots = table(Wire())
        let log = ResumeLog()
        var connections: [SlotConnection] = []
        for i in 0..<100 {
            let sub = Subscriber(channels: ["c"], limit: 1 << 16)
            let connection = CountingConnection(i, log, slots)
            connection.bind(sub)
            connections.append(connection)
            sub.attach(log: ChannelLog())
            // Every other stream suspended: only those need a resume for their heartbeat.
            if i % 2 == 0 { #expect(Self.read(sub) == .suspend) }
            log.streams.withLock { $0.append(sub) }
        }
        slots.heartbeat(heartbeat)  // the streams are new: the first pass marks them
        slots.heartbeat(heartbeat)
        let resumes = log.resumes.withLock { $0 }
        #expect(resumes.map(\.index) == Array(stride(from: 0, to: 100, by: 2)))
        #expect(resumes.allSatisfy { $0.queued == 100 }, "every heartbeat was queued before the first resume")
        for connection in connections { connection.close() }
    }

    @Test("a stream the table cannot write to gets its heartbeat through its reader, every pass")
    func readerOnlyEveryPass() {
        let slots = table(Wire())
        let connection = ReaderOnlyConnection(slots)
        let sub = Subscriber(channels: ["c"], limit: 1 << 16)
        connection.bind(sub)
        sub.attach(log: ChannelLog())
        #expect(Self.read(sub) == .suspend)
        slots.heartbeat(heartbeat)
        for pass in 1...3 {
            slots.heartbeat(heartbeat)
            #expect(connection.resumes.load(ordering: .relaxed) == pass)
            var taken: [UInt8] = []
            #expect(Self.read(sub, into: &taken) == .wrote(bytes: 3, events: 0))
            #expect(Self.read(sub) == .suspend)
        }
        connection.close()
    }

    @Test("a stream resumed but quiet for a whole interval gets a heartbeat queued, so the stall watch sees it")
    func quietResumedStream() {
        let wire = Wire()
        let slots = table(wire)
        let pending = PendingStreams()
        let sub = Subscriber(channels: ["c"], limit: 1 << 16, pending: pending)
        let connection = Connection(wire, slots)
        connection.bind(sub)
        sub.attach(log: ChannelLog())
        #expect(Self.read(sub) == .suspend)
        sub.enqueue(frame("data: x\n\n"))
        // Read once, and never again: the bytes sit in libmicrohttpd's buffer of a peer that stopped.
        #expect(Self.read(sub) == .wrote(bytes: 9, events: 1))
        _ = pending.takeAll()
        slots.heartbeat(heartbeat)
        #expect(sub.pendingBytes == 0, "active since the last pass")
        slots.heartbeat(heartbeat)
        #expect(sub.pendingBytes == 3 && pending.count == 1)
        #expect(wire.all.isEmpty, "not written from the table: the stream is not suspended")
        connection.close()
        _ = pending.takeAll()  // the set holds its streams (a server empties it at stop)
    }

    @Test("a slot given back is taken again; many streams, one pass")
    func reuse() {
        let wire = Wire()
        let slots = table(wire)
        let log = ChannelLog()
        let connections = (0..<2_500).map { _ in Connection(wire, slots) }
        for connection in connections { _ = idleReader(log, connection) }
        #expect(slots.count == 2_500)
        slots.heartbeat(heartbeat)
        slots.heartbeat(heartbeat)
        #expect(wire.all.count == 2_500)
        for connection in connections.prefix(1_000) { connection.close() }
        #expect(slots.count == 1_500)
        let more = (0..<1_000).map { _ in Connection(wire, slots) }
        for connection in more { _ = idleReader(log, connection) }
        #expect(slots.count == 2_500)
        for connection in connections.dropFirst(1_000) + more { connection.close() }
        #expect(slots.count == 0)
    }

    /// The shared flags of ``exclusion()``.
    final class Race: Sendable {
        let writing = Atomic<Bool>(false)
        let inSection = Atomic<Bool>(false)
        let overlaps = Atomic<Int>(0)
        let heartbeats = Atomic<Int>(0)
    }

    @Test("the pass never writes while a section of the stream runs (threads racing for 2 s and 11 heartbeats)")
    func exclusion() {
        let race = Race()
        let slots = HeartbeatSlots()
        slots.setWriter { _, _ in
            race.writing.store(true, ordering: .sequentiallyConsistent)
            if race.inSection.load(ordering: .sequentiallyConsistent) { race.overlaps.add(1, ordering: .relaxed) }
            for _ in 0..<50 { sched_yield() }
            if race.inSection.load(ordering: .sequentiallyConsistent) { race.overlaps.add(1, ordering: .relaxed) }
            race.writing.store(false, ordering: .sequentiallyConsistent)
            race.heartbeats.add(1, ordering: .relaxed)
            return .written
        }
        let connection = Connection(Wire(), slots)
        let sub = idleReader(ChannelLog(), connection)
        let frame = heartbeat
        // The race runs 2 s and until the pass has written a few heartbeats (a loaded machine may
        // give these threads little time in 2 s), at most 60 s.
        let deadline = ContinuousClock.now + .seconds(2)
        let cap = ContinuousClock.now + .seconds(60)
        let racing: @Sendable () -> Bool = {
            let now = ContinuousClock.now
            return now < cap && (now < deadline || race.heartbeats.load(ordering: .relaxed) <= 10)
        }
        // Two threads of their own (Dispatch's, not the tests' cooperative pool, which other suites
        // may keep busy): the race needs both running at once.
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            while racing() { slots.heartbeat(frame) }
        }
        DispatchQueue.global().async(group: group) {
            var buffer = [UInt8](repeating: 0, count: 4_096)
            while racing() {
                // A section that could write to the socket (as a flush or the reader does).
                _ = buffer.withUnsafeMutableBytes { out in
                    sub.read(
                        into: out,
                        onSuspend: {
                            race.inSection.store(true, ordering: .sequentiallyConsistent)
                            if race.writing.load(ordering: .sequentiallyConsistent) {
                                race.overlaps.add(1, ordering: .relaxed)
                            }
                            for _ in 0..<5 { sched_yield() }
                            race.inSection.store(false, ordering: .sequentiallyConsistent)
                        })
                }
                for _ in 0..<20 { sched_yield() }
            }
        }
        group.wait()
        connection.close()
        #expect(race.overlaps.load(ordering: .relaxed) == 0)
        let written = race.heartbeats.load(ordering: .relaxed)
        #expect(written > 10, "heartbeats written: \(written)")
    }
}
