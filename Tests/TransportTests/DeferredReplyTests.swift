import Dispatch
import MicroSSECore
import Synchronization
import Testing

@testable import MicroSSETransport

/// Counts calls of a test's suspend, resume and onClose closures.
private final class Calls: Sendable {
    let suspends = Atomic<Int>(0)
    let resumes = Atomic<Int>(0)
    let closes = Atomic<Int>(0)

    func stream() -> TransportReply {
        .stream(
            headers: [], subscriber: Subscriber(channels: [], limit: 1 << 16),
            onClose: { self.closes.add(1, ordering: .relaxed) })
    }

    func park(_ reply: DeferredReply) -> TransportReply? {
        reply.park(
            suspend: { suspends.add(1, ordering: .relaxed) }, resume: { self.resumes.add(1, ordering: .relaxed) })
    }
}

private func status(_ reply: TransportReply?) -> Int? {
    if case .response(let r) = reply { return r.status }
    return nil
}

@Suite("Deferred replies: the pending state machine, without sockets")
struct DeferredReplyTests {
    @Test("completed before the transport parks it: handed over at once, never suspended")
    func completedFirst() {
        let calls = Calls()
        let reply = DeferredReply()
        reply.transform {
            guard case .response(var r) = $0 else { return $0 }
            r.headers.append(("X-Step", "1"))
            return .response(r)
        }
        reply.complete(with: .response(.text("done", status: 202)))
        #expect(reply.phase == .ready)
        let taken = calls.park(reply)
        #expect(status(taken) == 202)
        if case .response(let r) = taken { #expect(r.headers.contains { $0.name == "X-Step" }) }
        #expect(calls.suspends.load(ordering: .relaxed) == 0)
        #expect(calls.resumes.load(ordering: .relaxed) == 0)
        #expect(reply.phase == .delivered)
    }

    @Test("parked, then completed: suspended once, resumed once, the first completion wins")
    func parkedThenCompleted() {
        let calls = Calls()
        let reply = DeferredReply()
        #expect(calls.park(reply) == nil)
        #expect(reply.phase == .parked)
        #expect(calls.suspends.load(ordering: .relaxed) == 1)
        #expect(reply.take() == nil)
        reply.complete(with: .response(.text("first", status: 200)))
        #expect(calls.resumes.load(ordering: .relaxed) == 1)
        reply.complete(with: calls.stream())
        #expect(calls.resumes.load(ordering: .relaxed) == 1)
        #expect(calls.closes.load(ordering: .relaxed) == 1, "a dropped stream releases its slot")
        #expect(status(reply.take()) == 200)
        #expect(reply.take() == nil)
    }

    @Test("the connection closes while suspended: a later completion is dropped, its stream released")
    func closedWhileParked() {
        let calls = Calls()
        let reply = DeferredReply()
        _ = calls.park(reply)
        #expect(reply.abandon())
        #expect(reply.phase == .dead)
        reply.complete(with: calls.stream())
        #expect(calls.resumes.load(ordering: .relaxed) == 0, "never resume a connection that is gone")
        #expect(calls.closes.load(ordering: .relaxed) == 1)
    }

    @Test("completed but not yet taken when the connection closes: the stream is released")
    func closedWhileReady() {
        let calls = Calls()
        let reply = DeferredReply()
        _ = calls.park(reply)
        reply.complete(with: calls.stream())
        #expect(reply.abandon())
        #expect(calls.closes.load(ordering: .relaxed) == 1)
        #expect(reply.take() == nil)
        #expect(!reply.abandon())
    }

    @Test("a completion with another deferred reply becomes a 500")
    func nestedDeferred() {
        let reply = DeferredReply()
        reply.complete(with: .deferred(DeferredReply()))
        #expect(status(reply.take()) == 500)
    }
}
