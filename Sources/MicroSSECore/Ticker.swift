import Dispatch
import MicroSSEWire

/// One timer for every stream's liveness: a heartbeat comment on idle streams and failure of
/// streams whose peer has read nothing for the write timeout (see ``SubscriberQueue/tick(stallTicks:heartbeat:)``).
///
/// `@unchecked Sendable`: its only state is the Dispatch timer, set once in `init`; a Dispatch
/// source may be cancelled from any thread.
package final class Ticker: @unchecked Sendable {
    private let timer: DispatchSourceTimer

    /// Starts ticking every `heartbeatSeconds` (every 5 s when heartbeats are off, for the write
    /// timeout alone); `streams` is read on every tick.
    package init(
        heartbeatSeconds: Int, writeTimeoutSeconds: Int, streams: @escaping @Sendable () -> [Subscriber]
    ) {
        let interval = heartbeatSeconds > 0 ? heartbeatSeconds : 5
        let stallTicks = writeTimeoutSeconds > 0 ? max(1, (writeTimeoutSeconds + interval - 1) / interval) : 0
        let frame = heartbeatSeconds > 0 ? Frame(bytes: EventEncoder.comment(""), isEvent: false) : nil
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        timer.schedule(deadline: .now() + .seconds(interval), repeating: .seconds(interval))
        timer.setEventHandler {
            Subscriber.tick(streams(), heartbeat: frame, stallTicks: stallTicks)
        }
        timer.resume()
    }

    /// Stops ticking.
    package func cancel() { timer.cancel() }
}
