import MicroSSECore
import MicroSSEWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Subscribing: registering a stream, and its resume (replay from each channel's stream in Redis,
/// merged in id order, with live events buffered until the replay is queued).
extension RedisBroker {
    // MARK: Subscribe

    package func subscribe(_ subscriber: Subscriber, after lastEventID: String?) -> ResumeStatus {
        switch register(subscriber, after: lastEventID) {
        case .done(let status): return status
        case .replay(let lastEventID, let position):
            return resume(subscriber, lastEventID: lastEventID, after: position, on: commands)
        }
    }

    /// What is left to do after registering a subscriber.
    enum Registration {
        case done(ResumeStatus)
        /// Live events are buffered until the replay after `position` is queued.
        case replay(lastEventID: String, position: RedisStreamID)
    }

    /// Registers `subscriber` for live events at once (buffering them when it resumes); no I/O.
    func register(_ subscriber: Subscriber, after lastEventID: String?) -> Registration {
        let position: RedisStreamID? = lastEventID.flatMap { l in
            RedisStreamID(l) ?? state.withLock { $0.callerIDs[l] }
        }
        let registered = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            for c in subscriber.channels { s.channels[c.rawValue, default: [:]][subscriber.id] = subscriber }
            if lastEventID != nil { s.pending[subscriber.id] = Pending() }
            return true
        }
        guard registered, let lastEventID else { return .done(.fresh) }
        guard let position else {
            return .done(finishResume(subscriber, replay: [], gap: .unknown, lastEventID: lastEventID, after: nil))
        }
        return .replay(lastEventID: lastEventID, position: position)
    }

    /// Fetches the replay on `lane`'s connection and queues it (with a gap event when Redis
    /// fails: the stream then starts live).
    func resume(
        _ subscriber: Subscriber, lastEventID: String, after position: RedisStreamID, on lane: CommandLane
    ) -> ResumeStatus {
        do {
            let (replay, missed) = try fetchReplay(
                channels: subscriber.channels.map(\.rawValue), after: position, on: lane)
            return finishResume(
                subscriber, replay: replay, gap: missed ? .evicted : nil, lastEventID: lastEventID, after: position)
        } catch {
            log("resume from Redis failed (\(error.message)); stream starts live with a gap event")
            return finishResume(subscriber, replay: [], gap: .unknown, lastEventID: lastEventID, after: position)
        }
    }

    /// Reads each channel's retained events after `position`, merged in id order, and whether
    /// any event after `position` may be gone.
    func fetchReplay(
        channels: [String], after position: RedisStreamID, on lane: CommandLane
    ) throws(MicroSSEError) -> ([(RedisStreamID, Frame)], Bool) {
        var replay: [(RedisStreamID, Frame)] = []
        var missed = false
        let since = try withCommandConnection(on: lane) { c throws(MicroSSEError) in
            try c.command(["GET", sinceKey])
        }
        if let s = since.text.flatMap(RedisStreamID.init), position < s { missed = true }
        for channel in channels {
            let key = channelKey(channel)
            let info = try withCommandConnection(on: lane) { c throws(MicroSSEError) in
                try c.command(["XINFO", "STREAM", key])
            }
            if case .array(let fields) = info {
                // Trimming (MAXLEN) leaves max-deleted-entry-id alone, so eviction shows as
                // entries-added > length; everything evicted is older than the first retained
                // entry, which is kept as the boundary (MAXLEN is the history count plus one).
                var length = 0
                var added = 0
                var first: RedisStreamID?
                var i = 0
                while i + 1 < fields.count {
                    switch fields[i].text {
                    case "length": length = Int(fields[i + 1].text ?? "") ?? 0
                    case "entries-added": added = Int(fields[i + 1].text ?? "") ?? 0
                    case "recorded-first-entry-id": first = fields[i + 1].text.flatMap(RedisStreamID.init)
                    case "max-deleted-entry-id":
                        if let d = fields[i + 1].text.flatMap(RedisStreamID.init), position < d { missed = true }
                    default: break
                    }
                    i += 2
                }
                if added > length, let first, position < first { missed = true }
            } else if case .error = info,
                position.milliseconds + UInt64(settings.channelTTLSeconds) * 1_000
                    < Clocks.wallMilliseconds()
            {
                // No stream: the channel never had events, or expired after channelTTL without a
                // publish. An id older than the TTL may have missed events that expired.
                missed = true
            }
            let range = try withCommandConnection(on: lane) { c throws(MicroSSEError) in
                try c.command(["XRANGE", key, "(" + position.description, "+"])
            }
            for entry in range.array ?? [] {
                if let (id, frame) = decodeEntry(entry) { replay.append((id, frame)) }
            }
        }
        replay.sort { $0.0 < $1.0 }
        return (replay, missed)
    }

    /// Queues the gap event, the replay, then what arrived live meanwhile (minus duplicates),
    /// and switches the subscriber to live delivery.
    func finishResume(
        _ sub: Subscriber, replay: [(RedisStreamID, Frame)], gap: GapReason?, lastEventID: String,
        after position: RedisStreamID?
    ) -> ResumeStatus {
        state.withLock { s in
            if let gap { sub.enqueue(ResumeStatus.gapFrame(lastEventID: lastEventID, reason: gap)) }
            var high = position ?? .zero
            for (id, frame) in replay {
                sub.enqueue(frame)
                high = max(high, id)
            }
            if position == nil { high = s.lastDelivered }
            for (id, frame) in s.pending.removeValue(forKey: sub.id)?.buffered ?? [] where id > high {
                sub.enqueue(frame)
                high = id
            }
            s.skipUpTo[sub.id] = high
        }
        return gap.map { .gap($0) } ?? .exact
    }

    package func unsubscribe(_ subscriber: Subscriber) {
        state.withLock { s in
            for c in subscriber.channels.map(\.rawValue) {
                s.channels[c]?[subscriber.id] = nil
                if s.channels[c]?.isEmpty == true { s.channels[c] = nil }
            }
            s.pending[subscriber.id] = nil
            s.skipUpTo[subscriber.id] = nil
        }
    }

    package var unavailableReason: String? {
        readerLost.withLock { $0.map { "Redis is unreachable (\($0))" } }
    }

    package var channelCount: Int { state.withLock { $0.channels.count } }
}
