import Dispatch
import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The heartbeat table: the ticker's pass writes a heartbeat to every idle stream's socket
/// without a section of the stream's own, never while anything else writes to that socket.
@Suite("Heartbeat slots")
struct HeartbeatSlotsTests {
    /// A connection whose socket is a number; its direct writes are recorded with the table's.
    /// What reached the sockets, in order.
    final class Wire: Sendable {
        let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    final class Connection: StreamConnection {
        let wire: Wire
        let resumes = Atomic<Int>(0)
        init(_ wire: Wire) { self.wire = wire }
        var writesWhileSuspended: Bool { true }
        var heartbeatSocket: Int32 { 7 }
        func resume() { resumes.add(1, ordering: .relaxed) }
        func cut() {}
        func writeWhileSuspended(_ bytes: UnsafeRawBufferPointer, events: Int) -> SuspendedWrite {
            wire.append(String(decoding: bytes, as: UTF8.self))
            return .written
        }
        func writeUnsent(_ bytes: UnsafeRawBufferPointer) -> Int {
            wire.append("rest:" + String(decoding: bytes, as: UTF8.self))
            return bytes.count
        }
    }

    let heartbeat = Frame(bytes: Array(":\n\n".utf8), isEvent: false)

    /// A table whose writer records "hb" per heartbeat and answers `answer` (then `.written`).
    func table(_ wire: Wire, answer: SuspendedWrite = .written) -> HeartbeatSlots {
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

    /// A suspended reader of `log` with a slot in `slots`.
    func idleReader(_ slots: HeartbeatSlots, _ log: ChannelLog, _ connection: Connection) -> Subscriber {
        let sub = Subscriber(channels: ["c"], limit: 1 << 16, heartbeats: slots)
        sub.attach(connection)
        sub.attach(log: log)
        #expect(sub.read(max: 4_096, write: { _ in }, onSuspend: {}) == .suspend)
        return sub
    }

    @Test("an idle stream gets its heartbeat from the pass alone; one active since the last pass gets none")
    func idleAndActive() {
        let wire = Wire()
        let slots = table(wire)
        let log = ChannelLog()
        let sub = idleReader(slots, log, Connection(wire))
        #expect(Subscriber.heartbeat(slots, frame: heartbeat) == 0)
        #expect(wire.all.isEmpty, "opened since the previous pass: none")
        Subscriber.heartbeat(slots, frame: heartbeat)
        Subscriber.heartbeat(slots, frame: heartbeat)
        #expect(wire.all == ["hb", "hb"])
        // An event since the last pass: no heartbeat at the next one, one at the pass after.
        var fanOut = LogFanOut()
        fanOut.append(frame("data: e\n\n"), to: log, readers: [sub])
        fanOut.finish()
        var scratch = [UInt8](repeating: 0, count: 4_096)
        #expect(!scratch.withUnsafeMutableBytes { sub.flush(into: $0) })
        Subscriber.heartbeat(slots, frame: heartbeat)
        #expect(wire.all == ["hb", "hb", "data: e\n\n"])
        Subscriber.heartbeat(slots, frame: heartbeat)
        #expect(wire.all.last == "hb")
        // Bytes pending: no heartbeat.
        sub.enqueue(frame("data: own\n\n"))
        let count = wire.all.count
        Subscriber.heartbeat(slots, frame: heartbeat)
        Subscriber.heartbeat(slots, frame: heartbeat)
        #expect(wire.all.count == count)
        sub.detach()
        #expect(slots.count == 0)
    }

    @Test("a heartbeat cut short: its rest goes out before anything else")
    func restFirst() {
        let wire = Wire()
        let slots = table(wire, answer: SuspendedWrite.partial(remaining: Array("\n\r\n".utf8)))
        let connection = Connection(wire)
        let sub = idleReader(slots, ChannelLog(), connection)
        Subscriber.heartbeat(slots, frame: heartbeat)
        Subscriber.heartbeat(slots, frame: heartbeat)
        #expect(wire.all == ["hb", "rest:\n\r\n"])
        #expect(sub.pendingBytes == 0 && connection.resumes.load(ordering: .relaxed) == 0)
        sub.detach()
    }

    @Test("a socket that takes nothing gets the heartbeat queued and resumed; a failed write fails the stream")
    func slowPaths() {
        let wire = Wire()
        let slots = table(wire, answer: .unavailable)
        let connection = Connection(wire)
        let sub = idleReader(slots, ChannelLog(), connection)
        Subscriber.heartbeat(slots, frame: heartbeat)
        Subscriber.heartbeat(slots, frame: heartbeat)
        #expect(connection.resumes.load(ordering: .relaxed) == 1)
        var taken: [UInt8] = []
        #expect(sub.read(max: 64, write: { taken += $0 }, onSuspend: {}) == .wrote(bytes: 3, events: 0))
        #expect(taken == Array(":\n\n".utf8))
        let failing = table(wire, answer: .failed)
        let other = idleReader(failing, ChannelLog(), Connection(wire))
        Subscriber.heartbeat(failing, frame: heartbeat)
        Subscriber.heartbeat(failing, frame: heartbeat)
        #expect(!other.isOpen)
        sub.detach()
        other.detach()
    }

    /// A connection the table cannot write to (TLS, HTTP/1.0).
    final class ReaderOnlyConnection: StreamConnection {
        let resumes = Atomic<Int>(0)
        func resume() { resumes.add(1, ordering: .relaxed) }
        func cut() {}
    }

    /// The order of resumes, and how many of `streams` had a heartbeat queued at each.
    final class ResumeLog: Sendable {
        let resumes = Mutex<[(index: Int, queued: Int)]>([])
        let streams = Mutex<[Subscriber]>([])
    }

    /// A stream the table cannot write to, whose resumes go to a shared log.
    final class CountingConnection: StreamConnection {
        let index: Int
        let log: ResumeLog
        init(_ index: Int, _ log: ResumeLog) { (self.index, self.log) = (index, log) }
        func resume() {
            let queued = log.streams.withLock { $0 }.filter { $0.pendingBytes > 0 }.count
            log.resumes.withLock { $0.append((index, queued)) }
        }
        func cut() {}
    }

    @Test("the pass queues the heartbeats it cannot write, then resumes those streams back to back, each once")
    func batchedResumes() {
        let slots = table(Wire())
        let log = ResumeLog()
        for i in 0..<100 {
            let sub = Subscriber(channels: ["c"], limit: 1 << 16, heartbeats: slots)
            sub.attach(CountingConnection(i, log))
            sub.attach(log: ChannelLog())
            // Every other stream suspended: only those need a resume for their heartbeat.
            if i % 2 == 0 { #expect(sub.read(max: 64, write: { _ in }, onSuspend: {}) == .suspend) }
            log.streams.withLock { $0.append(sub) }
        }
        Subscriber.heartbeat(slots, frame: heartbeat)  // the streams are new: the first pass marks them
        Subscriber.heartbeat(slots, frame: heartbeat)
        let resumes = log.resumes.withLock { $0 }
        #expect(resumes.map(\.index) == Array(stride(from: 0, to: 100, by: 2)))
        #expect(resumes.allSatisfy { $0.queued == 100 }, "every heartbeat was queued before the first resume")
        for sub in log.streams.withLock({ $0 }) { sub.detach() }
    }

    @Test("a stream the table cannot write to gets its heartbeat through its reader, every pass")
    func readerOnlyEveryPass() {
        let slots = table(Wire())
        let connection = ReaderOnlyConnection()
        let sub = Subscriber(channels: ["c"], limit: 1 << 16, heartbeats: slots)
        sub.attach(connection)
        sub.attach(log: ChannelLog())
        #expect(sub.read(max: 64, write: { _ in }, onSuspend: {}) == .suspend)
        Subscriber.heartbeat(slots, frame: heartbeat)
        for pass in 1...3 {
            Subscriber.heartbeat(slots, frame: heartbeat)
            #expect(connection.resumes.load(ordering: .relaxed) == pass)
            var taken: [UInt8] = []
            #expect(sub.read(max: 64, write: { taken += $0 }, onSuspend: {}) == .wrote(bytes: 3, events: 0))
            #expect(sub.read(max: 64, write: { _ in }, onSuspend: {}) == .suspend)
        }
        sub.detach()
    }

    @Test("a stream resumed but quiet for a whole interval gets a heartbeat queued, so the stall watch sees it")
    func quietResumedStream() {
        let wire = Wire()
        let slots = table(wire)
        let pending = PendingStreams()
        let sub = Subscriber(channels: ["c"], limit: 1 << 16, pending: pending, heartbeats: slots)
        sub.attach(Connection(wire))
        sub.attach(log: ChannelLog())
        #expect(sub.read(max: 64, write: { _ in }, onSuspend: {}) == .suspend)
        sub.enqueue(frame("data: x\n\n"))
        // Read once, and never again: the bytes sit in libmicrohttpd's buffer of a peer that stopped.
        #expect(sub.read(max: 64, write: { _ in }, onSuspend: {}) == .wrote(bytes: 9, events: 1))
        _ = pending.takeAll()
        Subscriber.heartbeat(slots, frame: heartbeat)
        #expect(sub.pendingBytes == 0, "active since the last pass")
        Subscriber.heartbeat(slots, frame: heartbeat)
        #expect(sub.pendingBytes == 3 && pending.count == 1)
        #expect(wire.all.isEmpty, "not written from the table: the stream is not suspended")
        sub.detach()
        _ = pending.takeAll()  // the set holds its streams (a server empties it at stop)
    }

    @Test("a slot given back is taken again; many streams, one pass")
    func reuse() {
        let wire = Wire()
        let slots = table(wire)
        let log = ChannelLog()
        let subs = (0..<2_500).map { _ in idleReader(slots, log, Connection(wire)) }
        #expect(slots.count == 2_500)
        Subscriber.heartbeat(slots, frame: heartbeat)
        Subscriber.heartbeat(slots, frame: heartbeat)
        #expect(wire.all.count == 2_500)
        for sub in subs.prefix(1_000) { sub.detach() }
        #expect(slots.count == 1_500)
        let more = (0..<1_000).map { _ in idleReader(slots, log, Connection(wire)) }
        #expect(slots.count == 2_500)
        for sub in subs.dropFirst(1_000) + more { sub.detach() }
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
        let sub = idleReader(slots, ChannelLog(), Connection(Wire()))
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
            while racing() { Subscriber.heartbeat(slots, frame: frame) }
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
        sub.detach()
        #expect(race.overlaps.load(ordering: .relaxed) == 0)
        let written = race.heartbeats.load(ordering: .relaxed)
        #expect(written > 10, "heartbeats written: \(written)")
    }
}
