import MicroSSECore
import MicroSSEWire
import Testing

/// The queue's states as docs/DESIGN.md draws them ("One stream, two layers"): the pure state
/// machine alone, no subscriber, no socket, no clock. Each test walks arrows of the diagram and
/// checks the action each method answers and the state it leaves.
@Suite("Queue states: the wait handshake and the phase")
struct QueueStatesTests {
    /// A suspended reader of a fresh log.
    func suspendedReader(_ log: ChannelLog, limit: Int = 1 << 16) -> SubscriberQueue {
        var q = SubscriberQueue(limit: limit)
        q.attach(log)
        #expect(q.wait == .reading)
        #expect(q.read(max: 64) { _ in } == .suspend)
        #expect(q.wait == .suspended(resumeDeferred: false))
        return q
    }

    /// A flush of the log's backlog through a write that takes `taken` bytes of it.
    func flush(_ q: inout SubscriberQueue, taking taken: Int) -> SubscriberQueue.FlushResult {
        var scratch = [UInt8](repeating: 0, count: SubscriberQueue.flushBytes)
        return scratch.withUnsafeMutableBytes { out in
            q.flush(into: out) { bytes, _ in
                taken >= bytes.count ? .written : .partial(unsent: bytes.count - taken)
            }
        }
    }

    @Test("reading → suspended → woken → reading: one resume per suspend")
    func oneResumePerSuspend() {
        var q = suspendedReader(ChannelLog())
        #expect(q.enqueue(frame("data: 1\n\n")) == .wake)
        #expect(q.wait == .woken && q.woken && !q.waiting)
        #expect(q.enqueue(frame("data: 2\n\n")) == .none, "already woken: no second resume")
        #expect(q.finish() == false, "woken: the reader will see the finish")
        var text: [UInt8] = []
        #expect(q.read(max: 64) { text += $0 } == .wrote(bytes: 18, events: 2))
        #expect(q.wait == .reading)
        #expect(q.read(max: 64) { _ in } == .end, "finishing and drained")
    }

    @Test("a flush keeps the stream suspended; one cut short defers the resume until the rest is out")
    func deferredResume() {
        let log = ChannelLog()
        var q = suspendedReader(log)
        log.append(frame("data: e\n\n"))
        #expect(q.published(flushable: true) == .flush)
        #expect(q.published(flushable: true) == .none, "one flush scheduled at a time")
        #expect(flush(&q, taking: .max) == .done)
        #expect(q.wait == .suspended(resumeDeferred: false) && q.pendingBytes == 0)

        log.append(frame("data: f\n\n"))
        #expect(q.published(flushable: true) == .flush)
        #expect(flush(&q, taking: 4) == .done)
        #expect(q.unsentBytes > 0 && q.pendingBytes == q.unsentBytes)
        // A resume asked for now is deferred: nothing may overtake the rest of the chunk.
        #expect(q.enqueue(frame("data: own\n\n")) == .none)
        #expect(q.wait == .suspended(resumeDeferred: true))
        let rest = q.unsentBytes
        #expect(q.unsentWritten(remaining: rest - 1) == .done)
        #expect(q.wait == .suspended(resumeDeferred: true) && q.unsentBytes == rest - 1)
        #expect(q.unsentWritten(remaining: 0) == .wake)
        #expect(q.wait == .woken && q.unsentBytes == 0)
        #expect(q.drain().text == "data: own\n\n")
    }

    @Test("failing a stream whose resume is deferred drops the rest and resumes it at once, to be closed")
    func failWhileDeferred() {
        let log = ChannelLog()
        var q = suspendedReader(log)
        log.append(frame("data: e\n\n"))
        #expect(q.published(flushable: true) == .flush)
        #expect(flush(&q, taking: 2) == .done)
        #expect(q.finish() == false, "the rest first")
        #expect(q.wait == .suspended(resumeDeferred: true))
        #expect(q.fail() == true)
        #expect(q.phase == .failed && q.wait == .woken && q.unsentBytes == 0)
        #expect(q.read(max: 64) { _ in } == .abort)
        #expect(q.enqueue(frame("data: late\n\n")) == .closed)
    }

    @Test("a direct write of big frames cut short in the reader suspends it with its resume due")
    func readerCutShort() {
        let log = ChannelLog()
        var q = SubscriberQueue(limit: 1 << 20)
        q.attach(log)
        let big = "data: " + String(repeating: "b", count: SubscriberQueue.directFrameBytes) + "\n\n"
        log.append(frame(big))
        var buffer = [UInt8](repeating: 0, count: 4_096)
        let action = buffer.withUnsafeMutableBytes { out in
            q.read(into: out, directBudget: 65_536) { parts, _ in
                .partial(unsent: parts.reduce(0) { $0 + $1.count } - 100)
            }
        }
        #expect(action == .suspend)
        #expect(q.wait == .suspended(resumeDeferred: true))
        #expect(q.unsentWritten(remaining: 0) == .wake, "resumed once the rest is out, to read on")
        #expect(q.wait == .woken)
    }

    @Test("a heartbeat the ticker could not write is queued once and resumes a suspended stream")
    func queuedHeartbeat() {
        let log = ChannelLog()
        var q = suspendedReader(log)
        #expect(q.heartbeat(frame(":\n\n", isEvent: false)) == .heartbeat(wake: true))
        #expect(q.wait == .woken)
        #expect(q.heartbeat(frame(":\n\n", isEvent: false)) == .none, "bytes pending: no second one")
        _ = q.drain()
        #expect(q.wait == .suspended(resumeDeferred: false))
    }
}
