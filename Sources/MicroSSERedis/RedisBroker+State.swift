import MicroSSECore

/// What the broker keeps about its own subscribers (behind its state lock).
extension RedisBroker {
    /// Live events held for a stream while its replay is fetched, at most its byte bound (a
    /// resume storm must not grow the hub without limit): past it they are dropped and the stream
    /// starts live after the replay with an `evicted` gap.
    package struct Pending {
        let limit: Int
        package private(set) var buffered: [(RedisStreamID, Frame)] = []
        private var bytes = 0
        package private(set) var overflowed = false

        package init(limit: Int) { self.limit = limit }

        package mutating func hold(_ id: RedisStreamID, _ frame: Frame) {
            guard !overflowed else { return }
            bytes += frame.bytes.count
            if bytes > limit {
                overflowed = true
                buffered = []
            } else {
                buffered.append((id, frame))
            }
        }
    }

    struct LocalState {
        var channels: [String: [UInt64: Subscriber]] = [:]
        /// Subscribers whose replay is being fetched: live events are buffered meanwhile.
        var pending: [UInt64: Pending] = [:]
        /// Live events at or below this id were already sent to the subscriber (by replay).
        var skipUpTo: [UInt64: RedisStreamID] = [:]
        /// The last global-stream id fanned out by this hub.
        var lastDelivered = RedisStreamID.zero
        /// Recent caller-given ids, to place a `Last-Event-ID` that is not a stream id.
        var callerIDs: [String: RedisStreamID] = [:]
        var callerOrder: [String] = []
        var closed = false
    }
}
