import Dispatch
import MicroSSEWire
import Synchronization

/// One timer for every stream's liveness: a heartbeat comment on idle streams and failure of
/// streams whose peer has read nothing for the write timeout (see ``SubscriberQueue/tick(stallTicks:)``).
///
/// It fires every quarter of a second. Every `heartbeatSeconds` it runs the transport's heartbeat
/// pass (`heartbeat`, given the heartbeat frame: the transport writes it to every idle stream
/// without visiting the streams' objects, and queues it through
/// ``Subscriber/queueHeartbeat(_:)`` on the others); on every tick it visits the streams in `pending` (those that had bytes
/// queued since the previous visit: the only ones that can be stalled), ticking those that still
/// have bytes pending when a write timeout is set. A stall is reported after the timeout's
/// ticks without progress, counted from the first tick that saw none, so a stream is failed
/// between a quarter and half a second after its peer has read nothing for the write timeout
/// (whole-second ticks made that up to two seconds: 4.7 s for a 3 s timeout), while an idle
/// stream costs nothing between heartbeats.
///
/// `@unchecked Sendable`: its state is the Dispatch timer, set once in `init` (a Dispatch source
/// may be cancelled from any thread), and an atomic tick counter.
package final class Ticker: @unchecked Sendable {
    private let timer: DispatchSourceTimer
    private let ticks = Atomic<Int>(0)

    /// Ticks per second.
    package static let ticksPerSecond = 4

    /// Starts ticking; `heartbeat` runs every `heartbeatSeconds`, `pending` is visited on every
    /// tick. Every stream must have been made with `pending` (``Subscriber/init(channels:limit:pending:)``).
    package init(
        heartbeatSeconds: Int, writeTimeoutSeconds: Int, pending: PendingStreams,
        heartbeat: @escaping @Sendable (Frame) -> Void
    ) {
        let perSecond = Self.ticksPerSecond
        let stallTicks = max(0, writeTimeoutSeconds) * perSecond
        let heartbeatTicks = heartbeatSeconds * perSecond
        let frame = heartbeatSeconds > 0 ? Frame(bytes: EventEncoder.comment(""), isEvent: false) : nil
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        let interval = DispatchTimeInterval.milliseconds(1_000 / perSecond)
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [weak self] in
            guard let self else { return }
            let tick = ticks.add(1, ordering: .relaxed).newValue
            if let frame, tick % heartbeatTicks == 0 {
                heartbeat(frame)
            }
            Subscriber.visitPending(pending, stallTicks: stallTicks)
        }
        timer.resume()
    }

    /// Stops ticking.
    package func cancel() { timer.cancel() }
}

/// The streams with bytes their reader has not taken: every stream with bytes pending is in it
/// unless a resume is on its way to its reader (a stream enters under its queue lock, on the
/// enqueue that leaves bytes pending on a stream not being woken, or on the read that leaves
/// bytes behind, and leaves only on a visit that finds nothing pending), each at most once. So
/// the per-tick stall pass and the largest-backlog gauge cost O(streams whose peer is behind),
/// not O(streams): the heartbeat that wakes every idle stream lists none of them. Lock order: a
/// subscriber's queue lock, then this set's lock.
package final class PendingStreams: Sendable {
    private let members = Mutex<[Subscriber]>([])

    package init() {}

    /// Called under `subscriber`'s queue lock, once until a visit drops it.
    func insert(_ subscriber: Subscriber) {
        members.withLock { $0.append(subscriber) }
    }

    /// Takes every member out (a visit puts back those still pending).
    package func takeAll() -> [Subscriber] {
        members.withLock { list in
            defer { list = [] }
            return list
        }
    }

    /// How many streams are listed (tests).
    package var count: Int { members.withLock { $0.count } }

    /// The most bytes any listed stream has pending: the largest backlog of every stream made
    /// with this set (a stream being woken is not listed, but its reader is about to take its bytes).
    package func largestPendingBytes() -> Int {
        members.withLock { Array($0) }.reduce(0) { max($0, $1.pendingBytes) }
    }
}
