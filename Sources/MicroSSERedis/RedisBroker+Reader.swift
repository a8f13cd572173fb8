import MicroSSECore
import MicroSSEWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The reader thread: one blocking `XREAD` loop on its own connection, delivering what other hubs
/// (and this one) published to the local subscribers.
extension RedisBroker {
    // MARK: The reader

    /// Entries one `XREAD` takes at most.
    static let readBatch = 512

    func readLoop() {
        defer { readerExited.signal() }
        var connection: RedisConnection?
        var backoff = 50
        var wasLost = false
        var nextCheck = Clocks.monotonicMilliseconds()
        while !stopping.load(ordering: .acquiring) {
            if connection == nil || connection!.isBroken {
                connection = nil
                readerFD.store(-1, ordering: .releasing)
                do {
                    let c = try settings.url.connectPrimary(
                        timeoutMilliseconds: settings.timeoutMilliseconds,
                        first: answeringSentinel.load(ordering: .relaxed))
                    c.setTimeout(milliseconds: 0)  // XREAD BLOCK bounds each wait
                    readerFD.store(c.fileDescriptor, ordering: .releasing)
                    if settings.url.usesSentinel { namedPrimary.withLock { $0 = c.endpoint } }
                    if stopping.load(ordering: .acquiring) { break }
                    connection = c
                    nextCheck = 0
                    backoff = 50
                    if wasLost { log("Redis reader reconnected; catching up") }
                    wasLost = false
                    readerLost.withLock { $0 = nil }
                } catch {
                    if !wasLost { log("Redis reader lost its connection: \(error.message)") }
                    wasLost = true
                    readerLost.withLock { $0 = error.message }
                    Clocks.sleep(milliseconds: backoff)
                    backoff = min(backoff * 2, settings.maxBackoffMilliseconds)
                    continue
                }
            }
            // After the sentinels promote another server, the old primary answers as a primary
            // until they get round to demoting it (seconds later, or never while it is cut off
            // from them): every second (and after each reconnection) the reader asks the
            // sentinels, follows their answer, and leaves it for the command connection.
            let now = Clocks.monotonicMilliseconds()
            if settings.url.usesSentinel && now >= nextCheck {
                nextCheck = now + 1_000
                let named = askSentinels()
                // No sentinel answered: ask again in 10 s, not every second (an unreachable
                // sentinel costs a connect timeout that live delivery would wait for).
                if named == nil { nextCheck = now + 10_000 }
                if let named, named != connection!.endpoint {
                    log("Redis reader: the sentinels name \(named) as the primary now; reconnecting")
                    connection = nil
                    continue
                }
            }
            let from = state.withLock { $0.lastDelivered }
            do {
                let reply = try connection!.command([
                    "XREAD", "COUNT", String(Self.readBatch), "BLOCK", "1000", "STREAMS", globalKey, from.description,
                ])
                if case .error(let e) = reply {
                    // A failover (UNBLOCKED, READONLY, ...): find the primary again and read on
                    // from the last id delivered.
                    log("Redis reader: \(e); finding the primary again")
                    connection = nil
                    Clocks.sleep(milliseconds: 50)
                    continue
                }
                if case .array(let streams) = reply, let entries = streams.first?.array?.dropFirst().first?.array {
                    deliver(try fillOneCopyEntries(entries, on: connection!))
                    // A full batch: more is waiting, the reader is behind by about the age of what
                    // it just delivered. Less: it has read all there was.
                    let now = settings.wallClock()
                    let last = state.withLock { $0.lastDelivered.milliseconds }
                    let behind = entries.count >= Self.readBatch && now > last ? Int(clamping: now - last) : 0
                    readerLagMilliseconds.store(behind, ordering: .relaxed)
                } else {
                    readerLagMilliseconds.store(0, ordering: .relaxed)
                }
            } catch {
                connection = nil
            }
        }
        readerFD.store(-1, ordering: .releasing)
    }

    /// Asks the sentinels (from the one that answered last) which server is the primary and how
    /// many replicas are up; records both for the command connection and returns the primary.
    func askSentinels() -> RedisURL.Endpoint? {
        guard
            let answer = settings.url.namedPrimary(
                timeoutMilliseconds: min(settings.timeoutMilliseconds, 250),
                first: answeringSentinel.load(ordering: .relaxed))
        else { return nil }
        answeringSentinel.store(answer.sentinel, ordering: .relaxed)
        namedPrimary.withLock { $0 = answer.primary }
        if let up = answer.replicasUp {
            let now = Clocks.monotonicMilliseconds()
            replicasUp.withLock { last in
                // During a failover the sentinels may count fewer replicas before the hub has left
                // the old primary: a drop counts only once it has lasted (a replica lost for good).
                if let last, last.primary == answer.primary, up < last.up,
                    now < last.at + ReplicaCheck.lostReplicaMilliseconds
                {
                    return
                }
                last = (answer.primary, up, now)
            }
        }
        return answer.primary
    }

    /// One entry of the global stream, decoded: its frame as a stream of its channel sees it
    /// (its label when it has one) and as a stream of several channels sees it (its position).
    struct Delivered {
        let id: RedisStreamID
        let channel: String
        let count: UInt64?
        let epoch: String?
        let single: Frame
        let multi: Frame
        /// Its data was evicted before this hub read it (``fillOneCopyEntries(_:on:)``).
        var lost = false
    }

    /// Fans a batch read from the global stream out to this hub's streams. When the batch does
    /// not follow on from the last entry delivered (its count jumped, or its epoch changed),
    /// entries were trimmed before this hub read them: every open stream first gets the gap
    /// signal (see ``lostPlace(_:batch:wakes:)``).
    func deliver(_ entries: [RedisValue]) {
        var decoded: [Delivered] = []
        for entry in entries {
            guard let fields = entry.array, fields.count == 2, let channel = field("c", in: fields[1]) else { continue }
            let count = field("n", in: fields[1]).flatMap { UInt64($0) }
            let epoch = field("p", in: fields[1])
            if field("lost", in: fields[1]) != nil, let id = fields[0].streamID {
                let none = Frame(bytes: [], isEvent: false)
                decoded.append(
                    Delivered(
                        id: id, channel: channel, count: count, epoch: epoch, single: none, multi: none, lost: true))
                continue
            }
            guard let (id, single, multi) = decodeEntry(entry, epoch: nil) else { continue }
            decoded.append(
                Delivered(id: id, channel: channel, count: count, epoch: epoch, single: single, multi: multi))
        }
        var fanOut = LogFanOut()
        // A batch's frames are appended log by log, each log's readers looked at once.
        var batch = LogBatch()
        var wakes: [Subscriber] = []
        var settle: [ObjectIdentifier: any CrossListener] = [:]
        state.withLock { s in
            for d in decoded where d.id > s.lastDelivered {
                if let count = d.count, let epoch = d.epoch {
                    if let lastCount = s.lastCount, let lastEpoch = s.lastEpoch,
                        epoch != lastEpoch || count > lastCount &+ 1
                    {
                        lostPlace(&s, batch: &batch, wakes: &wakes, fanOut: &fanOut)
                    }
                    s.lastCount = count
                    s.lastEpoch = epoch
                }
                let before = s.lastDelivered
                s.lastDelivered = d.id
                if d.lost {
                    lostEntry(d, after: before, &s, batch: &batch, wakes: &wakes)
                    continue
                }
                // Streams resuming or just resumed (none, but during a resume: one lookup).
                if let waiting = s.channels[d.channel] {
                    for sub in waiting.values {
                        if s.pending[sub.id] != nil {
                            s.pending[sub.id]!.hold(d.id, sub.channelCount > 1 ? d.multi : d.single)
                            continue
                        }
                        if let skip = s.skipUpTo[sub.id], d.id <= skip { continue }
                        // Past what its replay held (ids only grow): it reads the log from here,
                        // after what the batch holds so far.
                        batch.flush(into: &fanOut)
                        s.moveToLog(sub)
                    }
                }
                s.add(d.single, d.multi, of: d.channel, to: &batch)
                if !s.crossShards.listeners.isEmpty, let streams = s.crossShards.listeners[d.channel] {
                    let epoch = d.epoch ?? s.lastEpoch ?? s.crossShards.dataEpoch ?? ""
                    for stream in streams.values
                    where stream.live(
                        shard: logNumber, id: d.id, epoch: epoch, frame: d.multi, wakes: &wakes, fanOut: &fanOut)
                    {
                        settle[ObjectIdentifier(stream)] = stream
                    }
                }
            }
            batch.flush(into: &fanOut)
        }
        // Resume outside the lock: libmicrohttpd takes its own locks in resume.
        fanOut.finish()
        for sub in wakes { sub.wake() }
        for listener in settle.values { listener.settle() }
    }

    /// The reader lost its place: entries after the last one it delivered are gone (trimmed
    /// from the global stream while this hub was stalled or away, or the data set replaced).
    /// Every open stream of this hub gets the `evicted` gap signal, in order, before what is
    /// retained: log readers through their logs, a stream whose replay is being read drops its
    /// held live events (it starts after its replay with the gap), a stream just resumed gets the
    /// gap event queued. Counted in ``readerGaps``.
    func lostPlace(
        _ s: inout LocalState, batch: inout LogBatch, wakes: inout [Subscriber], fanOut: inout LogFanOut
    ) {
        readerGaps.add(1, ordering: .relaxed)
        log(
            "Redis reader: entries after \(s.lastDelivered) were trimmed before this hub read them; open streams get the gap signal"
        )
        let gap = ResumeStatus.gapFrame(
            lastEventID: positionID(s.lastDelivered, epoch: s.lastEpoch), reason: .evicted)
        for readers in s.logs.values { batch.add(gap, for: readers) }
        for set in s.setLogs.values { batch.add(gap, for: set.readers) }
        var told = Set<UInt64>()
        for subs in s.channels.values {
            for sub in subs.values where told.insert(sub.id).inserted {
                if s.pending[sub.id] != nil {
                    s.pending[sub.id]!.lose()
                    continue
                }
                switch sub.enqueue(gap, deferWake: true) {
                case .wake, .overflow(wake: true): wakes.append(sub)
                default: break
                }
            }
        }
        var crossTold = Set<ObjectIdentifier>()
        for streams in s.crossShards.listeners.values {
            for (key, stream) in streams where crossTold.insert(key).inserted {
                stream.lostPlace(shard: logNumber, wakes: &wakes, fanOut: &fanOut)
            }
        }
    }

    /// The id of the position `id` of the global stream under `epoch`, in this broker's log
    /// (``HubID``); an entry from before positions (no epoch) keeps its stream id.
    func positionID(_ id: RedisStreamID, epoch: String?) -> String {
        guard let epoch else { return id.description }
        return HubID.encode(HubPosition(log: logNumber, epoch: epoch, major: id.milliseconds, minor: id.sequence))
    }

    func field(_ name: String, in value: RedisValue) -> String? {
        guard let kv = value.array else { return nil }
        var i = 0
        while i + 1 < kv.count {
            // Compared as bytes: the reader looks up several fields of every entry it reads.
            if case .string(let key) = kv[i], key.elementsEqual(name.utf8) { return kv[i + 1].text }
            i += 2
        }
        return nil
    }

    /// Decodes `[id, [field, value, ...]]` into its frames: as a stream of its one channel sees
    /// it (the label when one was given, else the position) and as a stream of several channels
    /// sees it (the position). The epoch is the entry's own (`p`, global stream) or `epoch`
    /// (channel streams); an entry without one is from before positions and keeps its stream id.
    func decodeEntry(_ entry: RedisValue, epoch: String?) -> (RedisStreamID, Frame, Frame)? {
        guard let fields = entry.array, fields.count == 2, let id = fields[0].streamID,
            let data = field("d", in: fields[1])
        else { return nil }
        let name = field("e", in: fields[1]) ?? ""
        let caller = field("i", in: fields[1]) ?? ""
        let position = positionID(id, epoch: field("p", in: fields[1]) ?? epoch)
        guard let event = try? Event(data: data, event: name.isEmpty ? nil : name, id: position) else { return nil }
        let multi = Frame(bytes: EventEncoder.encode(event), isEvent: true)
        guard caller.hasPrefix("=") else { return (id, multi, multi) }
        return (id, multi.withID(String(caller.dropFirst())), multi)
    }
}
