import MicroSSECore
import MicroSSEWire

/// What a paged replay reads from Redis: where it starts (``fetchReplayStart(channels:after:on:)``,
/// one `MULTI`/`EXEC` that reads no event) and each page (``replayPage(_:starts:on:)``).
extension RedisBroker {
    /// Where a resume's paged replay starts: each channel's first entry to replay (nil: none),
    /// whether any event after the position may be gone, the last id Redis held (the snapshot
    /// bound: every later event arrives live), and the data set's epoch.
    struct ReplayStart {
        var starts: [RedisReplay.Start?] = []
        var missed = false
        var upTo: RedisStreamID?
        var epoch: String?
    }

    /// The number of a channel's entries after a position, at most `ARGV[2]`, and the oldest of
    /// them (the newest ones: trimming is lazy, a resume replays as if the stream held the newest
    /// history count plus the boundary entry), without sending them.
    static let replayStartScript = """
        local r = redis.call('XREVRANGE', KEYS[1], '+', ARGV[1], 'COUNT', ARGV[2])
        if #r == 0 then return {0, ''} end
        return {#r, r[#r][1]}
        """

    /// Reads where each channel's replay after `position` starts, every channel at the same
    /// instant (see ``fetchReplay(channels:after:composite:on:checkSince:placedAt:)``).
    func fetchReplayStart(
        channels: [String], after position: RedisStreamID, on lane: CommandLane
    ) throws(MicroSSEError) -> ReplayStart {
        var commands = [["GET", sinceKey], ["XREVRANGE", globalKey, "+", "-", "COUNT", "1"], ["GET", epochKey]]
        for channel in channels {
            commands.append(["XINFO", "STREAM", channelKey(channel)])
            commands.append([
                "EVAL", Self.replayStartScript, "1", channelKey(channel), "(" + position.description,
                String(max(1, settings.historyCount) + 1),
            ])
        }
        let results = try transaction(commands, on: lane)
        var start = ReplayStart()
        if let s = results[0].text.flatMap(RedisStreamID.init), position < s { start.missed = true }
        start.upTo = results[1].array?.first?.array?.first?.text.flatMap(RedisStreamID.init)
        start.epoch = results[2].text
        for (n, channel) in channels.enumerated() {
            if channelMayHaveMissed(channel, info: results[3 + 2 * n], after: position) { start.missed = true }
            let found = results[4 + 2 * n].array ?? []
            let count = found.first.flatMap { Int($0.text ?? "") } ?? 0
            // From before the boundary: events may have been trimmed after the position.
            if count > max(1, settings.historyCount) { start.missed = true }
            let first = found.count > 1 ? found[1].text.flatMap(RedisStreamID.init) : nil
            // Past the history TTL: not replayed (the pages skip them), and the stream is told.
            if let first, first.milliseconds < historyCutoffMilliseconds() { start.missed = true }
            start.starts.append(count > 0 ? first.map { RedisReplay.Start(id: $0, taken: false) } : nil)
        }
        return start
    }

    /// The most bytes of events one page holds (at least one event).
    static let pageBytes = 256 << 10

    /// One page of `replay`: per channel still open, `XINFO STREAM` and `XRANGE` from its start
    /// to `upTo` (one `MULTI`/`EXEC`), merged in id order up to the smallest last id among the
    /// channels that filled their count (the others are read again from there next time).
    /// `gap`: a channel dropped events after its start (its start is gone), or some were past
    /// the history TTL.
    func replayPage(
        _ replay: RedisReplay, starts: [RedisReplay.Start?], on lane: CommandLane
    ) throws(MicroSSEError) -> (frames: [Frame], starts: [RedisReplay.Start?], last: RedisStreamID?, gap: Bool) {
        let count = replay.pageCount
        let open = starts.indices.filter { starts[$0] != nil }
        var commands: [[String]] = []
        for i in open {
            let start = starts[i]!
            commands.append(["XINFO", "STREAM", channelKey(replay.channels[i])])
            commands.append([
                "XRANGE", channelKey(replay.channels[i]), start.id.description, replay.upTo.description, "COUNT",
                String(start.taken ? count + 1 : count),
            ])
        }
        let results = try transaction(commands, on: lane)
        var gap = false
        var lists: [[(RedisStreamID, Frame)]] = []
        var read: [[RedisStreamID]] = []
        var bound = replay.upTo
        var full = false
        let cutoff = historyCutoffMilliseconds()
        for (k, i) in open.enumerated() {
            let start = starts[i]!
            let entries = results[2 * k + 1].array ?? []
            var list: [(RedisStreamID, Frame)] = []
            var atStart = false
            for entry in entries {
                guard let (id, single, multi) = decodeEntry(entry, epoch: replay.epoch) else { continue }
                if id == start.id {
                    atStart = true
                    if start.taken { continue }
                }
                if id.milliseconds < cutoff {
                    gap = true
                    continue
                }
                list.append((id, replay.composite ? multi : single))
            }
            // Trimming drops the oldest entries first: the start still there, nothing after it
            // went; gone, events after it may have gone too (a stream that expired: all of them).
            if !atStart && channelDropped(info: results[2 * k], at: start.id) { gap = true }
            if entries.count == (start.taken ? count + 1 : count), let last = entries.last?.array?.first?.streamID {
                full = true
                bound = min(bound, last)
            }
            lists.append(list)
            read.append(entries.compactMap { $0.array?.first?.streamID })
        }
        var merged: [(RedisStreamID, Frame)] = []
        for k in open.indices { merged += lists[k].filter { $0.0 <= bound } }
        merged.sort { $0.0 < $1.0 }
        // At most pageBytes (but one event): the rest is read again next time.
        var bytes = 0
        for (n, entry) in merged.enumerated() {
            bytes += entry.1.bytes.count
            guard n > 0 && bytes > Self.pageBytes else { continue }
            merged.removeSubrange(n...)
            bound = merged[n - 1].0
            full = true
            break
        }
        var next = starts
        for (k, i) in open.enumerated() {
            if !full {
                next[i] = nil
            } else if let last = read[k].last(where: { $0 <= bound }), last != starts[i]!.id || !starts[i]!.taken {
                // Entries skipped (past the TTL, or not decoded) are passed too.
                next[i] = RedisReplay.Start(id: last, taken: true)
            }
        }
        return (merged.map(\.1), next, merged.last?.0, gap)
    }

    /// Whether a channel's stream (its `XINFO STREAM` reply) no longer holds `id` because it was
    /// trimmed past it, or expired.
    func channelDropped(info: RedisValue, at id: RedisStreamID) -> Bool {
        guard case .array(let fields) = info else { return true }
        var i = 0
        while i + 1 < fields.count {
            if fields[i].text == "recorded-first-entry-id" || fields[i].text == "first-entry",
                let first = fields[i + 1].text.flatMap(RedisStreamID.init) ?? fields[i + 1].array?.first?.streamID,
                id < first
            {
                return true
            }
            i += 2
        }
        return false
    }
}

extension RedisBroker {
    /// Queues the gap event, makes the stream read its log at once, and hands it the replay as a
    /// cursor (``RedisReplay``) due before anything the log brings: the replay stops at what the
    /// hub delivered (the log brings every later event), and live events that arrived while the
    /// resume was placed and are past the snapshot bound come after the pages.
    func finishPagedResume(
        _ sub: Subscriber, start: ReplayStart, lastEventID: String, after position: RedisStreamID
    ) -> ResumeStatus {
        let gap: GapReason? = start.missed ? .evicted : nil
        if state.withLock({ $0.lastDelivered < position }) {
            // The hub has not delivered up to the position yet: every event to replay comes
            // live, and the stream skips what the client has (``finishResume``).
            return finishResume(sub, replay: [], gap: gap, lastEventID: lastEventID, after: position)
        }
        return state.withLock { s in
            // Unsubscribed while the start was fetched: nothing more to send or track.
            guard let pending = s.pending.removeValue(forKey: sub.id) else { return gap.map { .gap($0) } ?? .exact }
            let bound = min(start.upTo ?? .zero, s.lastDelivered)
            // More live events than the stream could hold: dropped, the stream is told first.
            let tail = pending.overflowed ? [] : pending.buffered.filter { $0.0 > bound }.map(\.1)
            let reported = sub.enqueueResume([], lastEventID: lastEventID, gap: pending.overflowed ? .evicted : gap)
            s.moveToLog(sub)
            let replay = RedisReplay(
                broker: self, channels: sub.channels.map(\.rawValue),
                starts: bound > position ? start.starts : start.starts.map { _ in nil }, upTo: bound,
                epoch: start.epoch, after: position, tail: tail, toldGap: reported != nil)
            if !replay.isEmpty {
                replay.attach(sub)
                sub.startReplay(replay)
            }
            return reported.map { .gap($0) } ?? .exact
        }
    }
}

extension RedisBroker {
    /// Runs `commands` in one `MULTI`/`EXEC`, pipelined (one round trip), so they read one
    /// instant of the data set; returns their results, one per command. A refusal that means a
    /// failover (LOADING, READONLY...) throws and replaces the connection.
    func transaction(_ commands: [[String]], on lane: CommandLane) throws(MicroSSEError) -> [RedisValue] {
        let reply = try withCommandConnection(on: lane) { c throws(MicroSSEError) in
            let replies = try c.pipeline([["MULTI"]] + commands + [["EXEC"]])
            return replies.first(where: \.meansNotPrimary) ?? replies[replies.count - 1]
        }
        guard case .array(let results) = reply, results.count == commands.count else {
            throw MicroSSEError(.unavailable, "Redis refused the replay: \(reply)")
        }
        return results
    }
}
