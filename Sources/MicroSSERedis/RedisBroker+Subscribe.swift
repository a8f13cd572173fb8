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
        return state.withLock { s -> Registration in
            guard !s.closed else { return .done(.fresh) }
            guard let lastEventID else {
                s.addLogReader(subscriber)
                return .done(.fresh)
            }
            guard let position else {
                // An id this hub cannot place: the gap event, then live events from now on.
                let reported = subscriber.enqueueResume([], lastEventID: lastEventID, gap: .unknown)
                s.addLogReader(subscriber)
                return .done(reported.map { .gap($0) } ?? .exact)
            }
            for c in subscriber.channels { s.channels[c.rawValue, default: [:]][subscriber.id] = subscriber }
            s.pending[subscriber.id] = Pending(limit: subscriber.freeBytes)
            return .replay(lastEventID: lastEventID, position: position)
        }
    }

    /// Fetches the replay on `lane`'s connection and queues it (with a gap event when Redis
    /// fails: the stream then starts live).
    func resume(
        _ subscriber: Subscriber, lastEventID: String, after position: RedisStreamID, on lane: CommandLane
    ) -> ResumeStatus {
        do {
            let replay = try fetchReplay(channels: subscriber.channels.map(\.rawValue), after: position, on: lane)
            return finishResume(
                subscriber, replay: replay.events, gap: replay.missed ? .evicted : nil, lastEventID: lastEventID,
                after: position, upTo: replay.upTo)
        } catch {
            log("resume from Redis failed (\(error.message)); stream starts live with a gap event")
            return finishResume(subscriber, replay: [], gap: .unknown, lastEventID: lastEventID, after: position)
        }
    }

    /// What a resume replays: the retained events after its position, merged in id order,
    /// whether any event after the position may be gone, and the last id Redis held when the
    /// replay was read (every later event arrives live).
    struct Replay {
        var events: [(RedisStreamID, Frame)] = []
        var missed = false
        var upTo: RedisStreamID?
    }

    /// Reads each channel's retained events after `position` in one `MULTI`/`EXEC`, so that every
    /// channel is read at the same instant: an event stored between two channels' reads would
    /// otherwise be in neither the replay nor (being older than the replay's newest event) the
    /// live events that follow it.
    func fetchReplay(
        channels: [String], after position: RedisStreamID, on lane: CommandLane
    ) throws(MicroSSEError) -> Replay {
        var commands = [["MULTI"], ["GET", sinceKey], ["XREVRANGE", globalKey, "+", "-", "COUNT", "1"]]
        for channel in channels {
            commands.append(["XINFO", "STREAM", channelKey(channel)])
            commands.append(["XRANGE", channelKey(channel), "(" + position.description, "+"])
        }
        commands.append(["EXEC"])
        let reply = try withCommandConnection(on: lane) { c throws(MicroSSEError) in
            // A refusal that means a failover (LOADING, READONLY...) comes back, so the
            // connection is replaced; otherwise EXEC's reply.
            let replies = try c.pipeline(commands)
            return replies.first(where: \.meansNotPrimary) ?? replies[replies.count - 1]
        }
        guard case .array(let results) = reply, results.count == commands.count - 2 else {
            throw MicroSSEError(.unavailable, "Redis refused the replay: \(reply)")
        }
        var replay = Replay()
        if let s = results[0].text.flatMap(RedisStreamID.init), position < s { replay.missed = true }
        replay.upTo = results[1].array?.first?.array?.first?.text.flatMap(RedisStreamID.init)
        let cutoff = historyCutoffMilliseconds()
        for (n, channel) in channels.enumerated() {
            if channelMayHaveMissed(channel, info: results[2 + 2 * n], after: position) { replay.missed = true }
            for entry in results[3 + 2 * n].array ?? [] {
                guard let (id, frame) = decodeEntry(entry) else { continue }
                // Past the history TTL (a channel not published to since keeps them in Redis):
                // not replayed, and the stream is told.
                if id.milliseconds < cutoff {
                    replay.missed = true
                    continue
                }
                replay.events.append((id, frame))
            }
        }
        replay.events.sort { $0.0 < $1.0 }
        return replay
    }

    /// Whether `channel`'s stream (its `XINFO STREAM` reply) dropped an event after `position`.
    func channelMayHaveMissed(_ channel: String, info: RedisValue, after position: RedisStreamID) -> Bool {
        guard case .array(let fields) = info else {
            // No stream: the channel never had events, or expired after channelTTL without a
            // publish. An id older than the TTL may have missed events that expired.
            return position.milliseconds + UInt64(settings.channelTTLSeconds) * 1_000 < settings.wallClock()
        }
        // Trimming (by count, bytes or age) keeps the oldest retained entry as the boundary and
        // drops only older ones, so a position before it may have missed events when any were
        // dropped (entries-added > length); XDEL also records max-deleted-entry-id.
        var length = 0
        var added = 0
        var first: RedisStreamID?
        var missed = false
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
        return missed
    }

    /// Queues the gap event, the replay, then what arrived live meanwhile (minus duplicates: the
    /// replay holds every retained event up to `upTo`), and switches the subscriber to live
    /// delivery.
    func finishResume(
        _ sub: Subscriber, replay: [(RedisStreamID, Frame)], gap: GapReason?, lastEventID: String,
        after position: RedisStreamID, upTo: RedisStreamID? = nil
    ) -> ResumeStatus {
        return state.withLock { s in
            // Unsubscribed while the replay was fetched: nothing more to send or track.
            guard let pending = s.pending.removeValue(forKey: sub.id) else { return gap.map { .gap($0) } ?? .exact }
            var high = max(position, upTo ?? .zero)
            for (id, _) in replay { high = max(high, id) }
            // Live events that arrived meanwhile follow the replay; if more arrived than the stream
            // could hold, they were dropped and the stream starts live from now, after the gap.
            let live = pending.overflowed ? [] : pending.buffered.filter { $0.0 > high }
            let reported = sub.enqueueResume(
                replay.map(\.1) + live.map(\.1), lastEventID: lastEventID,
                gap: pending.overflowed ? .evicted : gap)
            let skip = pending.overflowed ? s.lastDelivered : max(high, live.last?.0 ?? high)
            // Every live event to come is past what the hub delivered: when the replay reaches no
            // further, the stream reads the log at once; else at the first live event past it.
            if skip <= s.lastDelivered {
                s.moveToLog(sub)
            } else {
                s.skipUpTo[sub.id] = skip
            }
            return reported.map { .gap($0) } ?? .exact
        }
    }

    package func unsubscribe(_ subscriber: Subscriber) {
        state.withLock { s in
            s.dropWaiting(subscriber)
            s.removeLogReader(subscriber)
        }
    }

    package var unavailableReason: String? {
        readerLost.withLock { $0.map { "Redis is unreachable (\($0))" } }
    }

    package var channelCount: Int { state.withLock { $0.channelCount } }

    /// Channel logs and channel-set logs with readers, and streams not reading a log yet (tests).
    package var logCounts: (channels: Int, sets: Int, waiting: Int) {
        state.withLock { s in (s.logs.count, s.setLogs.count, Set(s.channels.values.flatMap(\.keys)).count) }
    }
}
