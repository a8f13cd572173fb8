import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

/// The subscriber's side of writing to a suspended connection (flushes of the channel log, and
/// the rest of a chunk the socket took only part of), with a connection that records what it
/// was asked to write and takes as much as the test says.
@Suite("Direct writes: the subscriber's state machine")
struct DirectWriteQueueTests {
    final class Connection: StreamConnection {
        struct State {
            var wire: [UInt8] = []
            var resumes = 0
            var flushesScheduled = 0
            /// How many bytes the next direct write takes (nil: all).
            var take: Int?
            /// The rest of a chunk cut short, kept as the transport keeps it.
            var unsent: [UInt8] = []
        }
        let state = Mutex(State())
        var writesWhileSuspended: Bool { true }
        func resume() { state.withLock { $0.resumes += 1 } }
        func cut() {}
        func scheduleFlush() { state.withLock { $0.flushesScheduled += 1 } }

        func writeWhileSuspended(_ bytes: UnsafeRawBufferPointer, events: Int) -> SuspendedWrite {
            state.withLock { s in
                let n = min(s.take ?? bytes.count, bytes.count)
                s.take = nil
                s.wire += bytes[..<n]
                if n == 0 { return .unavailable }
                if n == bytes.count { return .written }
                s.unsent = Array(bytes[n...])
                return .partial(unsent: s.unsent.count)
            }
        }

        func writeUnsent() -> Int {
            state.withLock { s in
                let n = min(s.take ?? s.unsent.count, s.unsent.count)
                s.take = nil
                s.wire += s.unsent[..<n]
                s.unsent.removeFirst(n)
                return s.unsent.count
            }
        }

        var wire: String { String(decoding: state.withLock { $0.wire }, as: UTF8.self) }
        var resumes: Int { state.withLock { $0.resumes } }
        var flushesScheduled: Int { state.withLock { $0.flushesScheduled } }
        func take(_ n: Int) { state.withLock { $0.take = n } }
    }

    func publish(_ text: String, to log: ChannelLog, readers: [Subscriber]) {
        var fanOut = LogFanOut()
        fanOut.append(frame(text), to: log, readers: readers)
        fanOut.finish()
    }

    func readAll(_ sub: Subscriber) -> String {
        var bytes: [UInt8] = []
        while case .wrote = sub.read(max: 4_096, write: { bytes += $0 }, onSuspend: {}) {}
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A suspended reader of `log` on `connection`.
    func suspendedReader(_ log: ChannelLog, _ connection: Connection) -> Subscriber {
        let sub = Subscriber(channels: ["c"], limit: 1 << 16)
        sub.attach(connection)
        sub.attach(log: log)
        #expect(sub.read(max: 4_096, write: { _ in }, onSuspend: {}) == .suspend)
        return sub
    }

    /// A suspended reader whose flush of `text` the socket cut short after `taken` bytes.
    func cutShort(_ text: String, after taken: Int) -> (ChannelLog, Connection, Subscriber) {
        let log = ChannelLog()
        let connection = Connection()
        let sub = suspendedReader(log, connection)
        publish(text, to: log, readers: [sub])
        connection.take(taken)
        _ = flush(sub)
        return (log, connection, sub)
    }

    /// A flush through a 4 KiB scratch buffer, as the transport's writer makes it.
    func flush(_ sub: Subscriber) -> Bool {
        var scratch = [UInt8](repeating: 0, count: 4_096)
        return scratch.withUnsafeMutableBytes { sub.flush(into: $0) }
    }

    @Test("a publish schedules a flush instead of a resume; the flush writes the log and the stream stays suspended")
    func flushInsteadOfResume() {
        let log = ChannelLog()
        let connection = Connection()
        let sub = suspendedReader(log, connection)
        publish("data: a\n\n", to: log, readers: [sub])
        publish("data: b\n\n", to: log, readers: [sub])
        #expect(connection.flushesScheduled == 1, "once until the flush runs")
        #expect(connection.resumes == 0)
        #expect(!flush(sub))
        #expect(connection.wire == "data: a\n\ndata: b\n\n")
        #expect(sub.pendingBytes == 0 && connection.resumes == 0)
        publish("data: c\n\n", to: log, readers: [sub])
        #expect(connection.flushesScheduled == 2)
    }

    @Test("a chunk cut short is finished before anything else; a resume asked meanwhile waits for it")
    func cutShortChunk() {
        let (log, connection, sub) = cutShort("data: first\n\n", after: 5)
        #expect(connection.wire == "data:")
        #expect(sub.pendingBytes == "data: first\n\n".utf8.count - 5)
        // Published and queued meanwhile: nothing may be written or resumed before the rest.
        publish("data: second\n\n", to: log, readers: [sub])
        #expect(!flush(sub))
        sub.enqueue(frame("data: own\n\n"))
        #expect(connection.resumes == 0)
        #expect(sub.queueHeartbeat(frame(":\n\n", isEvent: false)) == .none)
        // The socket takes a little more, then the rest: only then is the connection resumed.
        connection.take(2)
        #expect(!sub.writeUnsent())
        #expect(connection.resumes == 0)
        #expect(!sub.writeUnsent())
        #expect(connection.resumes == 1)
        #expect(connection.wire == "data: first\n\n")
        #expect(readAll(sub) == "data: second\n\ndata: own\n\n")
    }

    @Test("once the rest is out, what was published meanwhile is flushed")
    func flushAfterRest() {
        let (log, connection, sub) = cutShort("data: 1\n\n", after: 3)
        publish("data: 2\n\n", to: log, readers: [sub])
        #expect(sub.writeUnsent(), "flush again")
        #expect(!flush(sub))
        #expect(connection.wire == "data: 1\n\ndata: 2\n\n")
        #expect(connection.resumes == 0)
    }

    @Test("a failed stream with the rest of a chunk unsent is resumed at once, to be closed")
    func failWithRestUnsent() {
        let (_, connection, sub) = cutShort("data: 1\n\n", after: 3)
        sub.fail()
        #expect(connection.resumes == 1)
        #expect(sub.read(max: 64, write: { _ in }, onSuspend: {}) == .abort)
        #expect(!sub.writeUnsent())
    }

    @Test("a finish waits for the rest of a chunk; a stop that cannot wait fails the stream, which resumes it")
    func finishThenStopWithRestUnsent() {
        let (log, connection, sub) = cutShort("data: 1\n\n", after: 3)
        sub.finish()
        #expect(connection.resumes == 0, "the rest of the chunk goes out first")
        sub.failIfWriteUnfinished()
        #expect(connection.resumes == 1)
        #expect(sub.read(max: 64, write: { _ in }, onSuspend: {}) == .abort)
        // Without a chunk cut short it changes nothing.
        let other = suspendedReader(log, connection)
        other.failIfWriteUnfinished()
        #expect(other.isOpen && connection.resumes == 1)
    }

    @Test("a finishing stream whose peer never takes the rest of a chunk is failed as stalled")
    func finishingStallFails() {
        let (_, connection, sub) = cutShort("data: 1\n\n", after: 3)
        sub.finish()
        for _ in 0..<3 { sub.tick(stallTicks: 2) }
        #expect(sub.isOpen == false && !sub.wasDropped, "finishing, not failed yet")
        sub.tick(stallTicks: 2)
        #expect(sub.wasDropped)
        #expect(connection.resumes == 1, "resumed so its reader closes it")
    }

    @Test("a backlog larger than a flush, or a socket that takes nothing, goes through the content reader")
    func fallbackToReader() {
        let log = ChannelLog()
        let connection = Connection()
        let sub = suspendedReader(log, connection)
        let big = "data: " + String(repeating: "y", count: 5_000) + "\n\n"
        publish(big, to: log, readers: [sub])
        #expect(!flush(sub))
        #expect(connection.resumes == 1 && connection.wire.isEmpty)
        #expect(readAll(sub) == big)
        publish("data: small\n\n", to: log, readers: [sub])
        connection.take(0)
        #expect(!flush(sub))
        #expect(connection.resumes == 2)
        #expect(readAll(sub) == "data: small\n\n")
    }
}

extension DirectWriteQueueTests {
    /// A content-reader call with a 4 KiB buffer of libmicrohttpd's: its answer and what it copied.
    func readerCall(_ sub: Subscriber) -> (SubscriberQueue.ReadAction, String) {
        var buffer = [UInt8](repeating: 0, count: 4_096)
        // The transport's budget for one direct write (64 KiB).
        let action = buffer.withUnsafeMutableBytes { sub.read(into: $0, directBudget: 65_536) { _, _ in } }
        guard case .wrote(let n, _) = action else { return (action, "") }
        return (action, String(decoding: buffer[..<n], as: UTF8.self))
    }

    /// A suspended reader of a log that just got a big event (as big as a direct write takes)
    /// of `letter`s.
    func readerOfBigEvent(_ letter: String) -> (ChannelLog, Connection, Subscriber, String) {
        let log = ChannelLog()
        let connection = Connection()
        let sub = suspendedReader(log, connection)
        let big = "data: " + String(repeating: letter, count: SubscriberQueue.directFrameBytes) + "\n\n"
        publish(big, to: log, readers: [sub])
        return (log, connection, sub, big)
    }

    @Test("the content reader writes big log events straight to the socket, after the stream's own frames")
    func readerWritesBigEventsDirectly() {
        let (log, connection, sub, big) = readerOfBigEvent("b")
        #expect(connection.resumes == 1, "too big to flush: the connection is resumed")
        // Two big events and a small one: one chunk straight from the log, nothing copied.
        publish(big, to: log, readers: [sub])
        publish("data: small\n\n", to: log, readers: [sub])
        #expect(readerCall(sub).0 == .suspend)
        #expect(connection.wire == big + big + "data: small\n\n")
        // A frame queued for the stream alone is due first: it is copied, and the big event
        // after it too (nothing may overtake what is copied).
        sub.enqueue(frame("data: own\n\n"))
        publish(big, to: log, readers: [sub])
        let (action, copied) = readerCall(sub)
        #expect(action == .wrote(bytes: 4_096, events: 1) && copied.hasPrefix("data: own\n\ndata: bbb"))
        #expect(copied + readAll(sub) == "data: own\n\n" + big)
        #expect(connection.wire.utf8.count == 2 * big.utf8.count + 13, "nothing more written directly")
        #expect(sub.pendingBytes == 0)
    }

    @Test("a big event cut short in the reader suspends it until the rest is out; then it reads on")
    func readerCutShortWaitsForRest() {
        let (log, connection, sub, big) = readerOfBigEvent("c")
        publish("data: next\n\n", to: log, readers: [sub])
        connection.take(100)
        #expect(readerCall(sub).0 == .suspend, "nothing may follow half a chunk")
        #expect(connection.wire.utf8.count == 100)
        // Published meanwhile: no resume while the rest is unsent.
        publish("data: later\n\n", to: log, readers: [sub])
        #expect(connection.resumes == 1)
        #expect(!sub.writeUnsent())
        #expect(connection.resumes == 2, "resumed once the rest is out")
        #expect(connection.wire == big + "data: next\n\n")
        #expect(readAll(sub) == "data: later\n\n")
    }
}
