import Dispatch
import MicroSSEWire
import Synchronization

/// One timer for every stream's liveness: a heartbeat comment on idle streams and failure of
/// streams whose peer has read nothing for the write timeout (see ``SubscriberQueue/tick(stallTicks:heartbeat:)``).
///
/// It fires every second. Every `heartbeatSeconds` it ticks every stream (with the heartbeat);
/// on the other seconds, when a write timeout is set, it ticks only the streams with bytes
/// pending (the only ones that can be stalled), so the timeout fires within about a second of
/// its value while an idle stream costs one lock per second.
///
/// `@unchecked Sendable`: its state is the Dispatch timer, set once in `init` (a Dispatch source
/// may be cancelled from any thread), and an atomic second counter.
package final class Ticker: @unchecked Sendable {
    private let timer: DispatchSourceTimer
    private let seconds = Atomic<Int>(0)

    /// Starts ticking; `streams` is read every second that has work.
    package init(
        heartbeatSeconds: Int, writeTimeoutSeconds: Int, streams: @escaping @Sendable () -> [Subscriber]
    ) {
        let stallTicks = max(0, writeTimeoutSeconds)
        let frame = heartbeatSeconds > 0 ? Frame(bytes: EventEncoder.comment(""), isEvent: false) : nil
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        timer.schedule(deadline: .now() + .seconds(1), repeating: .seconds(1))
        timer.setEventHandler { [weak self] in
            guard let self else { return }
            let second = seconds.add(1, ordering: .relaxed).newValue
            if let frame, second % heartbeatSeconds == 0 {
                Subscriber.tick(streams(), heartbeat: frame, stallTicks: stallTicks)
            } else if stallTicks > 0 {
                for sub in streams() where sub.pendingBytes > 0 {
                    _ = sub.tick(heartbeat: nil, stallTicks: stallTicks)
                }
            }
        }
        timer.resume()
    }

    /// Stops ticking.
    package func cancel() { timer.cancel() }
}
