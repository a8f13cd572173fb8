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
                    "XREAD", "COUNT", "512", "BLOCK", "1000", "STREAMS", globalKey, from.description,
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
                    deliver(entries)
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
        if let up = answer.replicasUp { replicasUp.store(up, ordering: .relaxed) }
        return answer.primary
    }

    func deliver(_ entries: [RedisValue]) {
        var decoded: [(RedisStreamID, String, Frame)] = []
        for entry in entries {
            guard let fields = entry.array, fields.count == 2, let id = fields[0].text.flatMap(RedisStreamID.init),
                let channel = field("c", in: fields[1]), let (_, frame) = decodeEntry(entry)
            else { continue }
            decoded.append((id, channel, frame))
            // Caller-given ids published on other hubs are placed here too.
            if let caller = field("i", in: fields[1]), caller.hasPrefix("=") {
                rememberCallerID(String(caller.dropFirst()), id)
            }
        }
        var fanOut = LogFanOut()
        // A batch's frames are appended log by log, each log's readers looked at once.
        var batch = LogBatch()
        state.withLock { s in
            for (id, channel, frame) in decoded where id > s.lastDelivered {
                s.lastDelivered = id
                // Streams resuming or just resumed (none, but during a resume: one lookup).
                if let waiting = s.channels[channel] {
                    for sub in waiting.values {
                        if s.pending[sub.id] != nil {
                            s.pending[sub.id]!.hold(id, frame)
                            continue
                        }
                        if let skip = s.skipUpTo[sub.id], id <= skip { continue }
                        // Past what its replay held (ids only grow): it reads the log from here,
                        // after what the batch holds so far.
                        batch.flush(into: &fanOut)
                        s.moveToLog(sub)
                    }
                }
                s.add(frame, of: channel, to: &batch)
            }
            batch.flush(into: &fanOut)
        }
        // Resume outside the lock: libmicrohttpd takes its own locks in resume.
        fanOut.finish()
    }

    func field(_ name: String, in value: RedisValue) -> String? {
        guard let kv = value.array else { return nil }
        var i = 0
        while i + 1 < kv.count {
            if kv[i].text == name { return kv[i + 1].text }
            i += 2
        }
        return nil
    }

    /// Decodes `[id, [field, value, ...]]` into the encoded frame (the wire id is the caller's id
    /// when one was given, else the stream id).
    func decodeEntry(_ entry: RedisValue) -> (RedisStreamID, Frame)? {
        guard let fields = entry.array, fields.count == 2, let id = fields[0].text.flatMap(RedisStreamID.init),
            let data = field("d", in: fields[1])
        else { return nil }
        let name = field("e", in: fields[1]) ?? ""
        let caller = field("i", in: fields[1]) ?? ""
        let wireID = caller.hasPrefix("=") ? String(caller.dropFirst()) : id.description
        guard let event = try? Event(data: data, event: name.isEmpty ? nil : name, id: wireID) else { return nil }
        return (id, Frame(bytes: EventEncoder.encode(event), isEvent: true))
    }
}
