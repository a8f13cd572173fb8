import Dispatch
import MicroSSECore
import MicroSSEWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Publishing: the Lua script, the acknowledgement rule (`WAIT`), and the entry point
/// libmicrohttpd's threads use.
extension RedisBroker {
    /// A publish waiting for a worker: stored with the others the worker takes at once.
    struct PublishItem: Sendable {
        let event: Event
        let channel: ChannelName
        let completion: @Sendable (Result<PublishReceipt, MicroSSEError>) -> Void
    }

    /// Stores the event in Redis (and, when the URL asks for it, waits until `waitReplicas`
    /// replicas confirmed it) before returning its id. Throws `.unavailable` when Redis is
    /// unreachable, failing over, or too few replicas confirmed in time: the event is then not
    /// acknowledged, though it may have been stored and may still be delivered.
    package func publish(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> String {
        try publishReceipt(event, to: channel).id
    }

    /// ``publish(_:to:)`` with the replicas that confirmed it. It takes the workers' path (so
    /// it is stored in a batch with the publishes waiting beside it) and waits for it; on a
    /// worker's own thread, or before ``start()``, it runs on the caller's thread.
    package func publishReceipt(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> PublishReceipt {
        if workers.onWorker || !workers.started.load(ordering: .acquiring) {
            try HubID.checkLabel(event.id)
            return try store([(event, channel)], on: commands)[0]
        }
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<PublishReceipt, MicroSSEError>?>(nil)
        publishReceipt(event, to: channel) { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try outcome.withLock { $0! }.get()
    }

    /// Stores a batch taken by a worker and completes each publish.
    func publishBatch(_ items: [PublishItem], on lane: CommandLane) {
        do throws(MicroSSEError) {
            let receipts = try store(items.map { ($0.event, $0.channel) }, on: lane)
            for (item, receipt) in zip(items, receipts) { item.completion(.success(receipt)) }
        } catch {
            for item in items { item.completion(.failure(error)) }
        }
    }

    /// Stores `events` in order with one call of the publish script on `lane`'s command
    /// connection, then (per the URL's `wait`) one `WAIT` for all of them; returns their
    /// receipts, with the replicas that confirmed them (nil with `wait=0`).
    func store(_ events: [(Event, ChannelName)], on lane: CommandLane) throws(MicroSSEError) -> [PublishReceipt] {
        guard !state.withLock({ $0.closed }) else { throw MicroSSEError(.unavailable, "the server is shutting down") }
        // A caller-given id travels as "=ID" so that an empty id stays distinguishable from none.
        var args: [[UInt8]] = [
            Array("6".utf8), Array(globalKey.utf8), Array(epochKey.utf8), Array(countKey.utf8),
            Array(sizesKey.utf8), Array(ageKey.utf8), Array(bytesKey.utf8),
            Array(String(settings.globalLength).utf8), Array(String(max(1, settings.historyCount)).utf8),
            Array(String(max(0, settings.historyBytes)).utf8), Array(String(historyCutoffMilliseconds()).utf8),
            Array(HubID.randomEpoch().utf8), Array(String(labelLimit).utf8),
            Array(String(settings.channelTTLSeconds + settings.channelTTLSeconds / 64).utf8),
            Array(String(max(0, settings.memoryBytes)).utf8),
            Array(settings.prefix.utf8), Array(String(Self.oneCopyAbove).utf8), Array(String(events.count).utf8),
        ]
        args.reserveCapacity(args.count + 5 * events.count)
        let due = expiryDue(events.map(\.1.rawValue))
        for (n, (event, channel)) in events.enumerated() {
            args.append(Array(channel.rawValue.utf8))
            args.append(Array(event.data.utf8))
            args.append(Array((event.event ?? "").utf8))
            args.append(Array((event.id.map { "=" + $0 } ?? "").utf8))
            args.append(due[n] ? [0x31] : [])
        }
        let url = settings.url
        let timeout = url.waitTimeoutMilliseconds
        var shortfall = false
        var confirmed: Int?
        defer {
            // Through sentinels, too few replicas may mean this primary was cut off and another
            // promoted: the next publish asks the sentinels again.
            if shortfall && url.usesSentinel { lane.slot.withLock { $0.connection = nil } }
        }
        let reply = try withCommandConnection(on: lane) { c throws(MicroSSEError) in
            // How many replicas must confirm: with wait=auto, those the primary reports in sync
            // (none: the primary alone acknowledges, and the receipt says 0).
            let replicas: Int
            if url.waitForConnectedReplicas {
                replicas = try onlineReplicas(c, lane)
                if url.usesSentinel, let since = lostReplica(c, online: replicas) {
                    throw MicroSSEError(
                        .unavailable, "Redis at \(c.endpoint) lost a replica \(since) ms ago (a failover?); retry")
                }
            } else if url.waitForEveryReplica {
                let counted = replicasUp.withLock { $0 }
                if let counted, counted.primary != c.endpoint {
                    // The sentinels named another primary since this connection was made: its
                    // replicas' count says nothing of this server's (which is being demoted).
                    shortfall = true
                    throw MicroSSEError(
                        .unavailable, "Redis at \(c.endpoint) is no longer the primary the sentinels name; retry")
                }
                replicas = max(1, counted?.up ?? 1)
            } else {
                replicas = url.waitReplicas
            }
            let reply = try runPublishScript(args, on: c)
            guard let stored = reply.array, stored.count == events.count + 2 else { return reply }
            guard replicas > 0 else {
                if url.waitForConnectedReplicas { confirmed = 0 }
                return reply
            }
            let waited = try c.command(["WAIT", String(replicas), String(timeout)])
            guard case .integer(let n) = waited else { return waited }
            guard n >= replicas else {
                shortfall = true
                // A replica gone or lagging: ask the primary again before the next publish.
                lane.replicaCheck.withLock { $0.connection = nil }
                throw MicroSSEError(
                    .unavailable,
                    "Redis stored the event but \(n) of \(replicas) replicas confirmed it within \(timeout) ms; retry")
            }
            confirmed = n
            return reply
        }
        guard let stored = reply.array, stored.count == events.count + 2, let epoch = stored[0].text else {
            throw MicroSSEError(.unavailable, "Redis refused the publish: \(reply)")
        }
        if case .integer(let total) = stored[1] { storedBytes.store(total, ordering: .relaxed) }
        var receipts: [PublishReceipt] = []
        receipts.reserveCapacity(events.count)
        for (n, (event, _)) in events.enumerated() {
            guard let id = stored[n + 2].streamID else {
                throw MicroSSEError(.unavailable, "Redis refused the publish: \(reply)")
            }
            receipts.append(PublishReceipt(id: event.id ?? Self.hubID(id, epoch: epoch), replicas: confirmed))
        }
        return receipts
    }

    /// For each of `channels` (a batch's, in order), whether its stream's expiry is to be set
    /// again: at most every 1/64 of the channel TTL per channel and hub (the script sets it to the
    /// TTL plus that much, so a stream still lives at least the TTL after its last publish), for
    /// the first of its events in the batch. Remembers up to 65,536 channels (then forgets all:
    /// each is set again once).
    func expiryDue(_ channels: [String]) -> [Bool] {
        let now = Clocks.monotonicMilliseconds()
        let interval = UInt64(settings.channelTTLSeconds / 64) * 1_000
        return expiryRefreshed.withLock { last in
            if last.count > 65_536 { last.removeAll(keepingCapacity: true) }
            return channels.map { channel in
                if let at = last[channel], now < at + interval || at == now { return false }
                last[channel] = now
                return true
            }
        }
    }

    /// The id of the position `id` of the global stream under `epoch` (``HubID``); an entry from
    /// before positions (no epoch) keeps its stream id.
    static func hubID(_ id: RedisStreamID, epoch: String?) -> String {
        guard let epoch else { return id.description }
        return HubID.encode(HubPosition(epoch: epoch, major: id.milliseconds, minor: id.sequence))
    }

    /// Replicas the primary on `c` reports connected and in sync (`state=online` in `INFO
    /// replication`): asked at most every ``ReplicaCheck/interval`` ms per lane, and at once on
    /// a new connection or after a `WAIT` fell short.
    func onlineReplicas(_ c: RedisConnection, _ lane: CommandLane) throws(MicroSSEError) -> Int {
        let now = Clocks.monotonicMilliseconds()
        let known = lane.replicaCheck.withLock { check -> Int? in
            check.connection == ObjectIdentifier(c) && now < check.checkedAt + ReplicaCheck.interval
                ? check.online : nil
        }
        if let known { return known }
        let info = try c.command(["INFO", "replication"])
        guard let text = info.text, case .string = info else {
            // An error reply (a failover under way: LOADING, ...): the caller's script meets it too.
            return 0
        }
        let online = Self.onlineReplicas(info: text)
        lane.replicaCheck.withLock {
            $0 = ReplicaCheck(connection: ObjectIdentifier(c), online: online, checkedAt: now)
        }
        replicasSeen.withLock { seen in
            // A lower count replaces the higher one only once that is older than the window.
            if let last = seen, last.primary == c.endpoint, online < last.online,
                now < last.at + ReplicaCheck.lostReplicaMilliseconds
            {
                return
            }
            seen = (c.endpoint, online, now)
        }
        return online
    }

    /// Milliseconds since the primary on `c` was seen with more than `online` replicas in sync,
    /// while that is under ``ReplicaCheck/lostReplicaMilliseconds``; nil otherwise.
    func lostReplica(_ c: RedisConnection, online: Int) -> UInt64? {
        let now = Clocks.monotonicMilliseconds()
        return replicasSeen.withLock { seen -> UInt64? in
            guard let last = seen, last.primary == c.endpoint, online < last.online,
                now < last.at + ReplicaCheck.lostReplicaMilliseconds
            else { return nil }
            return now - last.at
        }
    }

    /// Counts the `slaveN:…,state=online,…` lines of an `INFO replication` reply.
    static func onlineReplicas(info: String) -> Int {
        info.split(whereSeparator: \.isNewline).filter { line in
            line.hasPrefix("slave") && line.dropFirst(5).first?.isNumber == true && line.contains(",state=online,")
        }.count
    }

    /// Runs the publish script with `keysAndArgs` by its hash; a server that does not know it (the
    /// first publish, after a Redis restart or a failover) gets it with `SCRIPT LOAD` first.
    private func runPublishScript(_ keysAndArgs: [[UInt8]], on c: RedisConnection) throws(MicroSSEError) -> RedisValue {
        if let sha = publishScriptSHA.withLock({ $0 }) {
            let reply = try c.command(bytes: [Array("EVALSHA".utf8), Array(sha.utf8)] + keysAndArgs)
            guard case .error(let e) = reply, e.hasPrefix("NOSCRIPT") else { return reply }
        }
        let loaded = try c.command(bytes: [Array("SCRIPT".utf8), Array("LOAD".utf8), Self.publishScriptBytes])
        guard let sha = loaded.text else { return loaded }  // an error reply: the caller reports it
        publishScriptSHA.withLock { $0 = sha }
        return try c.command(bytes: [Array("EVALSHA".utf8), Array(sha.utf8)] + keysAndArgs)
    }

    /// Events whose id (its milliseconds) is older than this are past the history TTL: not
    /// replayed, and trimmed by the next publish to their channel. 0 without a TTL.
    func historyCutoffMilliseconds() -> UInt64 {
        let ttl = UInt64(max(0, settings.historyTTLSeconds)) * 1_000
        let now = settings.wallClock()
        return ttl > 0 && now > ttl ? now - ttl : 0
    }

    /// Connects to the primary for commands; its timeout leaves room for `WAIT`.
    func dialCommandConnection() throws(MicroSSEError) -> RedisConnection {
        let c = try settings.url.connectPrimary(
            timeoutMilliseconds: settings.timeoutMilliseconds, first: answeringSentinel.load(ordering: .relaxed))
        if settings.url.usesSentinel { namedPrimary.withLock { $0 = c.endpoint } }
        if settings.url.waitReplicas > 0 || settings.url.waitForEveryReplica || settings.url.waitForConnectedReplicas {
            c.setTimeout(milliseconds: settings.timeoutMilliseconds + settings.url.waitTimeoutMilliseconds)
        }
        return c
    }

    /// Runs `body` on the command connection, dialling it first when needed (with backoff, so a
    /// Redis outage costs callers one failed dial per backoff period, not one per call).
    func withCommandConnection(
        on lane: CommandLane, _ body: (RedisConnection) throws(MicroSSEError) -> RedisValue
    ) throws(MicroSSEError) -> RedisValue {
        try lane.slot.withLock { (slot: inout CommandSlot) throws(MicroSSEError) -> RedisValue in
            if let c = slot.connection, let named = namedPrimary.withLock({ $0 }), named != c.endpoint {
                // The sentinels promoted another server: leave this one before it is demoted.
                slot.connection = nil
            }
            if slot.connection == nil || slot.connection!.isBroken {
                slot.connection = nil
                let now = Clocks.monotonicMilliseconds()
                guard now >= slot.retryAt || dialedAt.load(ordering: .relaxed) >= slot.failedAt else {
                    throw MicroSSEError(.unavailable, "Redis at \(settings.url) is unreachable; retrying")
                }
                do throws(MicroSSEError) {
                    let c = try dialCommandConnection()
                    _ = try markSince(c)
                    slot.connection = c
                    slot.backoff = 50
                    dialedAt.store(Clocks.monotonicMilliseconds(), ordering: .relaxed)
                    // A new connection (perhaps to a new primary): ask it about its replicas.
                    lane.replicaCheck.withLock { $0 = ReplicaCheck() }
                } catch {
                    slot.retryAt = now + UInt64(slot.backoff)
                    slot.failedAt = Clocks.monotonicMilliseconds()
                    slot.backoff = min(slot.backoff * 2, settings.maxBackoffMilliseconds)
                    throw error
                }
            }
            do throws(MicroSSEError) {
                let reply = try body(slot.connection!)
                if reply.meansNotPrimary {
                    // A failover: find the primary again on the next call, at once.
                    slot.connection = nil
                    throw MicroSSEError(.unavailable, "Redis is failing over (\(reply)); retry")
                }
                return reply
            } catch {
                // A broken connection is replaced; a refusal on a sound one (too few replicas
                // confirmed in time) keeps it.
                if slot.connection?.isBroken != false { slot.connection = nil }
                throw error
            }
        }
    }
}

extension RedisBroker {
    /// ``publishReceipt(_:to:)`` from libmicrohttpd's threads: returns at once and completes from
    /// a worker, like ``publish(_:to:completion:)``.
    package func publishReceipt(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<PublishReceipt, MicroSSEError>) -> Void
    ) {
        do throws(MicroSSEError) {
            try HubID.checkLabel(event.id)
        } catch {
            completion(.failure(error))
            return
        }
        let item = PublishItem(event: event, channel: channel, completion: completion)
        let job = RedisWorkers.Job(
            run: { lane in self.publishBatch([item], on: lane) },
            cancel: { completion(.failure(MicroSSEError(.unavailable, "the server is shutting down"))) }, item: item)
        switch workers.submit(job, .publish) {
        case nil: break
        case .closed: completion(.failure(MicroSSEError(.unavailable, "the server is shutting down")))
        case .full:
            completion(
                .failure(
                    MicroSSEError(.unavailable, "\(workers.capacity) publishes are already waiting for Redis; retry")))
        }
    }
}
