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
        case .replay(let lastEventID, let from):
            return resume(subscriber, lastEventID: lastEventID, from: from, on: commands)
        }
    }

    /// Where a resume starts, as far as the hub can tell without asking Redis.
    enum ResumeFrom: Equatable {
        /// A position in the global stream; `epoch` nil for an id from before positions (or a
        /// label's entry: both of the data set Redis holds now).
        case position(RedisStreamID, epoch: String?)
        /// A position of another shard: where the channels lived before a shard was added (see
        /// ``resumeMoved(_:lastEventID:from:on:)``).
        case moved(HubPosition)
        /// Not in the hub's form: a label of one of the stream's channels, else an id from
        /// before positions, else unknown (the replay job asks Redis).
        case label(String)
    }

    /// What is left to do after registering a subscriber.
    enum Registration {
        case done(ResumeStatus)
        /// Live events are buffered until the replay from `from` is queued.
        case replay(lastEventID: String, from: ResumeFrom)
    }

    /// Registers `subscriber` for live events at once (buffering them when it resumes); no I/O.
    func register(_ subscriber: Subscriber, after lastEventID: String?) -> Registration {
        var from: ResumeFrom?
        if let lastEventID {
            if let positions = HubID.decode(lastEventID) {
                // One log (this Redis data set) with `ms-seq` offsets, or with shards one of
                // another shard (where a moved channel lived): anything else is not ours.
                if positions.count == 1, let p = positions.first, let minor = p.minor {
                    if p.log == logNumber {
                        from = .position(RedisStreamID(milliseconds: p.major, sequence: minor), epoch: p.epoch)
                    } else if p.log < settings.shardCount, settings.directory != nil {
                        from = .moved(p)
                    }
                }
            } else {
                from = .label(lastEventID)
            }
        }
        return state.withLock { s -> Registration in
            guard !s.closed else { return .done(.fresh) }
            guard let lastEventID else {
                s.addLogReader(subscriber)
                return .done(.fresh)
            }
            guard let from else {
                // An id this hub cannot place: the gap event, then live events from now on.
                let reported = subscriber.enqueueResume([], lastEventID: lastEventID, gap: .unknown)
                s.addLogReader(subscriber)
                return .done(reported.map { .gap($0) } ?? .exact)
            }
            for c in subscriber.channels { s.channels[c.rawValue, default: [:]][subscriber.id] = subscriber }
            s.pending[subscriber.id] = Pending(limit: subscriber.freeBytes)
            return .replay(lastEventID: lastEventID, from: from)
        }
    }

    /// Places the resume (a label through the label tables), fetches the replay on `lane`'s
    /// connection and queues it (with a gap event when Redis fails: the stream then starts live).
    func resume(
        _ subscriber: Subscriber, lastEventID: String, from: ResumeFrom, on lane: CommandLane, retry: Bool = true
    ) -> ResumeStatus {
        let channels = subscriber.channels.map(\.rawValue)
        // A connection left idle across a Redis restart fails at its first use: a resume only
        // reads, so it tries once more on a new one.
        let stale = lane.slot.withLock { $0.connection != nil }
        do {
            var placed = from
            if case .label(let label) = from {
                guard let found = try placeLabel(label, channels: channels, on: lane) else {
                    return finishResume(subscriber, replay: [], gap: .unknown, lastEventID: lastEventID, after: .zero)
                }
                placed = found
            }
            if case .moved(let p) = placed {
                return try resumeMoved(subscriber, lastEventID: lastEventID, from: p, on: lane)
            }
            guard case .position(let position, let epoch) = placed else { return .fresh }
            let start = try fetchReplayStart(channels: channels, after: position, on: lane)
            if let epoch, epoch != start.epoch {
                // A position from another data set (Redis flushed, or an epoch key lost): the
                // client may have none of what is retained, and is told.
                var replay = try fetchReplay(channels: channels, after: .zero, composite: channels.count > 1, on: lane)
                replay.missed = true
                return finishResume(
                    subscriber, replay: replay.events, gap: .evicted, lastEventID: lastEventID, after: .zero,
                    upTo: replay.upTo)
            }
            if epoch != nil, position > (start.upTo ?? .zero) {
                // Never issued in this data set, or lost by a failover: the hub cannot place it.
                return finishResume(
                    subscriber, replay: [], gap: .unknown, lastEventID: lastEventID, after: start.upTo ?? .zero,
                    upTo: start.upTo)
            }
            guard !subscriber.wholeReplay else {
                // Read at once by its reader (a Mercure hub's probe): queued whole.
                let replay = try fetchReplay(
                    channels: channels, after: position, composite: channels.count > 1, on: lane)
                return finishResume(
                    subscriber, replay: replay.events, gap: replay.missed ? .evicted : nil, lastEventID: lastEventID,
                    after: position, upTo: replay.upTo)
            }
            // Read a page at a time as the stream drains (see RedisReplay).
            return finishPagedResume(subscriber, start: start, lastEventID: lastEventID, after: position)
        } catch {
            if retry && stale && lane.slot.withLock({ $0.connection == nil }) {
                return resume(subscriber, lastEventID: lastEventID, from: from, on: lane, retry: false)
            }
            log("resume from Redis failed (\(error.message)); stream starts live with a gap event")
            return finishResume(subscriber, replay: [], gap: .unknown, lastEventID: lastEventID, after: .zero)
        }
    }

    /// Looks `label` up in the label table of each of `channels` (one pipeline). Found at one
    /// entry: that position; at different entries of two channels: nil (ambiguous); nowhere: an
    /// id from before positions (`ms-seq`) is still a position of the global stream, anything
    /// else is nil (unknown).
    func placeLabel(_ label: String, channels: [String], on lane: CommandLane) throws(MicroSSEError) -> ResumeFrom? {
        let commands = channels.map { ["HGET", labelKey($0), label] }
        var replies: [RedisValue] = []
        _ = try withCommandConnection(on: lane) { c throws(MicroSSEError) in
            replies = try c.pipeline(commands)
            return replies.first(where: \.meansNotPrimary) ?? .null
        }
        let found = Set(replies.compactMap { $0.text.flatMap(RedisStreamID.init) })
        if found.count > 1 { return nil }
        if let id = found.first { return .position(id, epoch: nil) }
        return RedisStreamID(label).map { .position($0, epoch: nil) }
    }

    /// What a resume replays: the retained events after its position, merged in id order,
    /// whether any event after the position may be gone, the last id Redis held when the
    /// replay was read (every later event arrives live), and the data set's epoch.
    struct Replay {
        var events: [(RedisStreamID, Frame)] = []
        var missed = false
        var upTo: RedisStreamID?
        var epoch: String?
    }

    /// Reads each channel's retained events after `position` in one `MULTI`/`EXEC`, so that every
    /// channel is read at the same instant: an event stored between two channels' reads would
    /// otherwise be in neither the replay nor (being older than the replay's newest event) the
    /// live events that follow it. `composite`: the frames of a stream of several channels
    /// (positions, never labels). `checkSince`: a position before `PREFIX:since` may have missed
    /// events (ids from before positions; a position with an epoch is placed by its epoch).
    /// `placedAt`: when the client was last served (milliseconds), if not the position's own
    /// time: a channel that has no stream may have expired since then.
    func fetchReplay(
        channels: [String], after position: RedisStreamID, composite: Bool, on lane: CommandLane,
        checkSince: Bool = true, placedAt: UInt64? = nil
    ) throws(MicroSSEError) -> Replay {
        var commands = [["GET", sinceKey], ["XREVRANGE", globalKey, "+", "-", "COUNT", "1"], ["GET", epochKey]]
        for channel in channels {
            commands.append(["XINFO", "STREAM", channelKey(channel)])
            // Trimming is lazy: a resume replays as if the stream held the newest history count
            // plus the boundary entry (see the publish script).
            commands.append([
                "XREVRANGE", channelKey(channel), "+", "(" + position.description, "COUNT",
                String(max(1, settings.historyCount) + 1),
            ])
        }
        let results = try transaction(commands, on: lane)
        var replay = Replay()
        if checkSince, let s = results[0].text.flatMap(RedisStreamID.init), position < s { replay.missed = true }
        replay.upTo = results[1].array?.first?.array?.first?.text.flatMap(RedisStreamID.init)
        replay.epoch = results[2].text
        let cutoff = historyCutoffMilliseconds()
        for (n, channel) in channels.enumerated() {
            if channelMayHaveMissed(channel, info: results[3 + 2 * n], after: position, placedAt: placedAt) {
                replay.missed = true
            }
            let entries = results[4 + 2 * n].array ?? []
            // From before the boundary: events may have been trimmed after the position.
            if entries.count > max(1, settings.historyCount) { replay.missed = true }
            for entry in entries.reversed() {
                guard let (id, single, multi) = decodeEntry(entry, epoch: replay.epoch) else { continue }
                // Past the history TTL (a channel not published to since keeps them in Redis):
                // not replayed, and the stream is told.
                if id.milliseconds < cutoff {
                    replay.missed = true
                    continue
                }
                replay.events.append((id, composite ? multi : single))
            }
        }
        replay.events.sort { $0.0 < $1.0 }
        return replay
    }

    /// Whether `channel`'s stream (its `XINFO STREAM` reply) dropped an event after `position`.
    func channelMayHaveMissed(
        _ channel: String, info: RedisValue, after position: RedisStreamID, placedAt: UInt64? = nil
    ) -> Bool {
        guard case .array(let fields) = info else {
            // No stream: the channel never had events, or expired after channelTTL without a
            // publish. An id older than the TTL may have missed events that expired.
            let served = placedAt ?? position.milliseconds
            return served + UInt64(settings.channelTTLSeconds) * 1_000 < settings.wallClock()
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
    /// `before`: frames of another shard queued ahead of the replay (a moved channel's).
    func finishResume(
        _ sub: Subscriber, replay: [(RedisStreamID, Frame)], gap: GapReason?, lastEventID: String,
        after position: RedisStreamID, upTo: RedisStreamID? = nil, before: [Frame] = []
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
                before + replay.map(\.1) + live.map(\.1), lastEventID: lastEventID,
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

    package var readerHealth: ReaderHealth? {
        ReaderHealth(
            lostPlace: readerGaps.load(ordering: .relaxed),
            lagMilliseconds: readerLagMilliseconds.load(ordering: .relaxed),
            storedBytes: storedBytes.load(ordering: .relaxed) >= 0 ? storedBytes.load(ordering: .relaxed) : nil)
    }

    /// Channel logs and channel-set logs with readers, and streams not reading a log yet (tests).
    package var logCounts: (channels: Int, sets: Int, waiting: Int) {
        state.withLock { s in (s.logs.count, s.setLogs.count, Set(s.channels.values.flatMap(\.keys)).count) }
    }
}
