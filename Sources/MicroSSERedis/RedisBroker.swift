import Dispatch
import MicroSSECore
import MicroSSEWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// An ``EventBroker`` on Redis Streams, so several hubs behind a load balancer share channels,
/// ids and history.
///
/// - Every publish runs one Lua script: `XADD` to the global stream `PREFIX:all` (all channels,
///   one order, the ids every hub uses) and, with the same id, to the channel's stream
///   `PREFIX:ch:NAME` bounded by the history count and bytes plus one entry (the extra entry marks
///   where eviction stopped), which expires after `channelTTL` seconds without a publish. With
///   `wait=N` in the URL, `WAIT` then holds the acknowledgement until N replicas have it; with
///   `wait=auto` (the default with sentinels), until every replica the primary reports in sync
///   has it, and while it reports none the primary alone acknowledges (the receipt says 0).
/// - With a `redis-sentinel://` URL both connections go to the primary the sentinels name, and
///   move when a connection fails, Redis answers `READONLY`/`UNBLOCKED`, or the sentinels (asked
///   by the reader every second) name another server.
/// - Each hub runs one reader thread blocked in `XREAD BLOCK` on the global stream and fans every
///   entry out to its local subscribers: live delivery never polls. After a lost connection it
///   reconnects with backoff and reads on from the last id it delivered, so open streams see no
///   gap and no duplicate.
/// - Ids are positions in the global stream under the data set's epoch (`PREFIX:epoch`), or a
///   publisher's label on streams of its one channel, found again through the channel's label
///   table (`PREFIX:lb:NAME`); see docs/DESIGN.md, "Positions, labels and epochs". Resume
///   replays `XRANGE` of each channel after the position. Missed events are detected from the
///   channel stream's `XINFO STREAM` (trimmed history), from the epoch (ids of another data set)
///   and from `PREFIX:since`, the id at which this data set began (for ids from before positions).
///
/// Unlike ``MemoryBroker``, `publish` returns once Redis has stored the event; local delivery
/// follows through the reader (in id order, within milliseconds). Publishing while Redis is
/// unreachable throws `.unavailable` (the hub answers 503): nothing is acknowledged that was not
/// stored.
package final class RedisBroker: EventBroker {
    package struct Settings: Sendable {
        var url: RedisURL
        var prefix = "microsse"
        var historyCount: Int
        var historyBytes = Int.max
        /// Entries `PREFIX:all` keeps (about), which every hub's reader follows.
        var globalLength = 100_000
        var channelTTLSeconds = 86_400
        var timeoutMilliseconds = 1_000
        var maxBackoffMilliseconds = 2_000
        /// Threads running publishes and resumes for libmicrohttpd's threads, each with its own
        /// command connection, and how many jobs may wait for them (more are refused: `503`).
        var workerCount = 2
        var workQueueCapacity = 1_024
        /// Seconds an event stays replayable (``MicroSSE/ServerConfiguration/historyTTLSeconds``);
        /// 0 = no age limit.
        var historyTTLSeconds = 0
        /// The wall clock in milliseconds that ages history (tests move it).
        var wallClock: @Sendable () -> UInt64 = { Clocks.wallMilliseconds() }
    }

    let settings: Settings
    let log: @Sendable (String) -> Void
    /// The command connection of callers outside libmicrohttpd (``Server/publish``); the
    /// workers have one each.
    let commands = CommandLane()
    /// Publishes and resumes from libmicrohttpd's threads run here (``isAsynchronous``).
    let workers: RedisWorkers
    let state = Mutex(LocalState())
    let readerFD = Atomic<Int32>(-1)
    let stopping = Atomic<Bool>(false)
    /// Whether a reader thread was started and not yet waited for by ``shutdown()``.
    let readerRunning = Atomic<Bool>(false)
    /// Signalled by the reader thread as it exits.
    let readerExited = DispatchSemaphore(value: 0)
    /// The publish script's SHA-1 as Redis reported it (`SCRIPT LOAD`): publishes run it with
    /// `EVALSHA`, so Redis neither receives nor hashes its 1.5 KB of text on every publish.
    let publishScriptSHA = Mutex<String?>(nil)
    /// Why the reader has no connection to Redis right now, or nil while it has one (`/readyz`).
    let readerLost = Mutex<String?>(nil)
    /// The primary the sentinels named when the reader last asked (nil without sentinels).
    let namedPrimary = Mutex<RedisURL.Endpoint?>(nil)
    /// Replicas the sentinels consider up (for `wait=all`); -1 before they were asked.
    let replicasUp = Atomic<Int>(-1)
    /// The sentinel that answered last: asked first next time.
    let answeringSentinel = Atomic<Int>(0)
    /// Times the reader lost its place (entries trimmed before it read them), and how far
    /// behind the newest entry it was after its last read, in milliseconds.
    let readerGaps = Atomic<Int>(0)
    let readerLagMilliseconds = Atomic<Int>(0)
    /// The most replicas in sync the primary was seen with lately (`wait=auto`), and when.
    let replicasSeen = Mutex<(primary: RedisURL.Endpoint, online: Int, at: UInt64)?>(nil)

    /// One command connection, used by one thread at a time (its lock is held during I/O).
    final class CommandLane: Sendable {
        let slot = Mutex(CommandSlot())
        /// What the primary last said about its replicas on this lane's connection (`wait=auto`).
        let replicaCheck = Mutex(ReplicaCheck())
    }

    /// Replicas the primary reported connected and in sync (`INFO replication`), on which
    /// connection and when: asked again after ``ReplicaCheck/interval``, on a new connection, or
    /// after a `WAIT` fell short, so a publish costs no extra round trip in between.
    struct ReplicaCheck {
        static let interval: UInt64 = 500
        /// Through sentinels, how long a primary that lost a replica in sync is refused: that
        /// replica may just have been promoted (a manual or partition failover), and whatever the
        /// old primary acknowledges then is lost; the hub moves within a second or two of the
        /// sentinels naming the new primary. A primary first seen without replicas (one just
        /// promoted) is trusted at once.
        static let lostReplicaMilliseconds: UInt64 = 3_000
        var connection: ObjectIdentifier?
        var online = 0
        var checkedAt: UInt64 = 0
    }

    /// The command connection and when it may next be re-dialled.
    struct CommandSlot: @unchecked Sendable {
        // hiredis contexts are not thread-safe; this one is only used inside its lane's lock.
        var connection: RedisConnection?
        var retryAt: UInt64 = 0
        var backoff = 50
    }

    package init(settings: Settings, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.settings = settings
        self.log = log
        self.workers = RedisWorkers(count: settings.workerCount, capacity: settings.workQueueCapacity)
    }

    var globalKey: String { "\(settings.prefix):all" }
    func channelKey(_ c: String) -> String { "\(settings.prefix):ch:\(c)" }
    func channelBytesKey(_ c: String) -> String { "\(settings.prefix):chb:\(c)" }
    var sinceKey: String { "\(settings.prefix):since" }
    /// The epoch of this data set's positions (see docs/DESIGN.md, "Positions, labels and epochs").
    var epochKey: String { "\(settings.prefix):epoch" }
    /// How many entries the global stream was given (each entry carries its count, `n`).
    var countKey: String { "\(settings.prefix):n" }
    /// A channel's label table (label → entry id) and its order (by milliseconds).
    func labelKey(_ c: String) -> String { "\(settings.prefix):lb:\(c)" }
    func labelOrderKey(_ c: String) -> String { "\(settings.prefix):lbo:\(c)" }
    /// Labels a channel's table keeps, the newest first: twice the history count.
    var labelLimit: Int { max(64, 2 * settings.historyCount) }

    // MARK: Lifecycle

    /// Connects, marks where this data set began, and starts the reader thread. Throws
    /// `.invalidArgument` for a worker count, queue limit or stream length out of range, `.unavailable` when
    /// Redis cannot be reached.
    package func start() throws(MicroSSEError) {
        try workers.validate()
        guard settings.globalLength >= 100 else {
            throw MicroSSEError(
                .invalidArgument, "the Redis stream length must be at least 100 (got \(settings.globalLength))")
        }
        let connection = try dialCommandConnection()
        if settings.url.usesSentinel { _ = askSentinels() }
        let tail = try markSince(connection)
        state.withLock { s in
            s.lastDelivered = tail.id
            s.lastCount = tail.count
            s.lastEpoch = tail.epoch
        }
        commands.slot.withLock { $0.connection = connection }
        try workers.start()
        stopping.store(false, ordering: .relaxed)
        readerRunning.store(true, ordering: .relaxed)
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                let broker = Unmanaged<RedisBroker>.fromOpaque(raw!).takeRetainedValue()
                broker.readLoop()
                return nil
            }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            readerRunning.store(false, ordering: .relaxed)
            throw MicroSSEError(.startFailed, "cannot start the Redis reader thread (error \(rc))")
        }
        pthread_detach(thread)
    }

    /// The global stream's last entry: its id, and the count and epoch it carries (nil for an
    /// entry from before positions, or none).
    struct Tail {
        var id = RedisStreamID.zero
        var count: UInt64?
        var epoch: String?
    }

    /// Sets `since` and the epoch when absent (a new or emptied data set) and returns the global
    /// stream's last entry.
    func markSince(_ c: RedisConnection) throws(MicroSSEError) -> Tail {
        let now = RedisStreamID(milliseconds: Clocks.wallMilliseconds(), sequence: 0)
        _ = try c.command(["SET", sinceKey, now.description, "NX"])
        _ = try c.command(["SET", epochKey, HubID.randomEpoch(), "NX"])
        let last = try c.command(["XREVRANGE", globalKey, "+", "-", "COUNT", "1"])
        if let entry = last.array?.first?.array, let id = entry.first?.text.flatMap(RedisStreamID.init) {
            let fields = entry.count == 2 ? entry[1] : .null
            return Tail(id: id, count: field("n", in: fields).flatMap { UInt64($0) }, epoch: field("p", in: fields))
        }
        // An empty stream: every entry added from now on is new to this hub (not "now": an entry
        // added within this millisecond could carry exactly that id and be skipped).
        return Tail()
    }

    package func shutdown() {
        state.withLock { $0.closed = true }
        // Jobs still queued complete now (publishes with 503, resumes live with a gap event);
        // those running finish their Redis round trip on their own.
        workers.shutdown()
        stopping.store(true, ordering: .releasing)
        let fd = readerFD.load(ordering: .acquiring)
        if fd >= 0 { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        // The reader leaves XREAD at once (socket shut down) or within its block timeout.
        if readerRunning.exchange(false, ordering: .acquiringAndReleasing) {
            _ = readerExited.wait(timeout: .now() + 3)
        }
        commands.slot.withLock { $0.connection = nil }
    }

    // MARK: Publish

    /// Stores the event in Redis (and, when the URL asks for it, waits until `waitReplicas`
    /// replicas confirmed it) before returning its id. Throws `.unavailable` when Redis is
    /// unreachable, failing over, or too few replicas confirmed in time: the event is then not
    /// acknowledged, though it may have been stored and may still be delivered.
    package func publish(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> String {
        try publishReceipt(event, to: channel, on: commands).id
    }

    package func publishReceipt(_ event: Event, to channel: ChannelName) throws(MicroSSEError) -> PublishReceipt {
        try publishReceipt(event, to: channel, on: commands)
    }

    /// ``publish(_:to:)`` on `lane`'s command connection, with the replicas that confirmed it
    /// (nil with `wait=0`).
    func publishReceipt(
        _ event: Event, to channel: ChannelName, on lane: CommandLane
    ) throws(MicroSSEError) -> PublishReceipt {
        guard !state.withLock({ $0.closed }) else { throw MicroSSEError(.unavailable, "the server is shutting down") }
        try HubID.checkLabel(event.id)
        // A caller-given id travels as "=ID" so that an empty id stays distinguishable from none.
        let args: [[UInt8]] = [
            Array("7".utf8), Array(globalKey.utf8),
            Array(channelKey(channel.rawValue).utf8), Array(channelBytesKey(channel.rawValue).utf8),
            Array(epochKey.utf8), Array(countKey.utf8), Array(labelKey(channel.rawValue).utf8),
            Array(labelOrderKey(channel.rawValue).utf8),
            Array(String(settings.globalLength).utf8), Array(String(max(1, settings.historyCount)).utf8),
            Array(channel.rawValue.utf8), Array(event.data.utf8), Array((event.event ?? "").utf8),
            Array((event.id.map { "=" + $0 } ?? "").utf8), Array(String(settings.channelTTLSeconds).utf8),
            Array(String(max(0, settings.historyBytes)).utf8), Array(String(historyCutoffMilliseconds()).utf8),
            Array(HubID.randomEpoch().utf8), Array(String(labelLimit).utf8),
        ]
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
                replicas = max(1, replicasUp.load(ordering: .relaxed))
            } else {
                replicas = url.waitReplicas
            }
            let reply = try runPublishScript(args, on: c)
            guard reply.array?.first?.text.flatMap(RedisStreamID.init) != nil else { return reply }
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
        guard let stored = reply.array, stored.count == 2, let id = stored[0].text.flatMap(RedisStreamID.init),
            let epoch = stored[1].text
        else {
            throw MicroSSEError(.unavailable, "Redis refused the publish: \(reply)")
        }
        return PublishReceipt(id: event.id ?? Self.hubID(id, epoch: epoch), replicas: confirmed)
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
                guard now >= slot.retryAt else {
                    throw MicroSSEError(.unavailable, "Redis at \(settings.url) is unreachable; retrying")
                }
                do throws(MicroSSEError) {
                    let c = try dialCommandConnection()
                    _ = try markSince(c)
                    slot.connection = c
                    slot.backoff = 50
                    // A new connection (perhaps to a new primary): ask it about its replicas.
                    lane.replicaCheck.withLock { $0 = ReplicaCheck() }
                } catch {
                    slot.retryAt = now + UInt64(slot.backoff)
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
        let job = RedisWorkers.Job(
            run: { lane in
                do throws(MicroSSEError) {
                    completion(.success(try self.publishReceipt(event, to: channel, on: lane)))
                } catch {
                    completion(.failure(error))
                }
            },
            cancel: { completion(.failure(MicroSSEError(.unavailable, "the server is shutting down"))) })
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
