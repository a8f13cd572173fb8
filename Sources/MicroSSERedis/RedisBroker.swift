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
        /// Bytes all channels' streams keep together (about; 0 or less: no bound).
        var memoryBytes = 0
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
        /// This deployment's number among several (`--redis` repeated): the log number of its
        /// positions, recorded in `PREFIX:shard` so a reordered list is refused. nil: the only one
        /// (log 0, nothing recorded).
        var shard: Int?
        /// How many deployments the hub lists; the most any hub listed is recorded in
        /// `PREFIX:shards`, and a hub listing fewer refuses to start.
        var shardCount = 1
        /// The brokers of every shard (a moved channel's resume reads its old shard).
        var directory: ShardDirectory?
    }

    let settings: Settings
    let log: @Sendable (String) -> Void
    /// The command connection of callers outside libmicrohttpd (``Server/publish``); the
    /// workers have one each.
    let commands = CommandLane()
    /// Publishes and resumes from libmicrohttpd's threads run here (``isAsynchronous``).
    let workers: RedisWorkers
    /// Bounds the replay pages its workers fetch at once (``RedisReplay``).
    let replayPager = ReplayPager()
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
    /// Replicas the sentinels consider up (for `wait=all`), the primary they were counted for, and
    /// when: nil before the sentinels were asked. A lower count for the same primary replaces a
    /// higher one only once that is older than ``ReplicaCheck/lostReplicaMilliseconds``.
    let replicasUp = Mutex<(primary: RedisURL.Endpoint, up: Int, at: UInt64)?>(nil)
    /// The sentinel that answered last: asked first next time.
    let answeringSentinel = Atomic<Int>(0)
    /// Times the reader lost its place (entries trimmed before it read them), and how far
    /// behind the newest entry it was after its last read, in milliseconds.
    let readerGaps = Atomic<Int>(0)
    let readerLagMilliseconds = Atomic<Int>(0)
    /// The history bytes of all channels in Redis as the last publish counted them (-1: none yet).
    let storedBytes = Atomic<Int>(-1)
    /// When a command connection was last dialled (monotonic ms): a lane backing off after a
    /// failed dial dials at once when another lane got through since.
    let dialedAt = Atomic<UInt64>(0)
    /// When this hub last set each channel's expiry (``expiryDue(_:)``).
    let expiryRefreshed = Mutex<[String: UInt64]>([:])
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
        var failedAt: UInt64 = 0
        var backoff = 50
    }

    package init(settings: Settings, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.settings = settings
        self.log = log
        self.workers = RedisWorkers(count: settings.workerCount, capacity: settings.workQueueCapacity)
    }

    var globalKey: String { "\(settings.prefix):all" }
    func channelKey(_ c: String) -> String { "\(settings.prefix):ch:\(c)" }
    /// Bytes each channel's stream holds (a hash), channels by their oldest entry (a sorted
    /// set), and the bytes of all of them: the memory budget (docs/REDIS.md).
    var sizesKey: String { "\(settings.prefix):sizes" }
    var ageKey: String { "\(settings.prefix):age" }
    var bytesKey: String { "\(settings.prefix):bytes" }
    var sinceKey: String { "\(settings.prefix):since" }
    /// The shard number this data set was first used as (several deployments).
    var shardKey: String { "\(settings.prefix):shard" }
    /// The most shards a hub of this cluster listed.
    var shardCountKey: String { "\(settings.prefix):shards" }
    /// The log number of this broker's positions.
    var logNumber: Int { settings.shard ?? 0 }
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
        try checkShards(on: connection)
        let epoch = try connection.command(["GET", epochKey]).text
        state.withLock { s in
            s.lastDelivered = tail.id
            s.lastCount = tail.count
            s.lastEpoch = tail.epoch
            s.crossShards.dataEpoch = epoch
        }
        commands.slot.withLock { $0.connection = connection }
        try workers.start(batch: { items, lane in self.publishBatch(items, on: lane) })
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

    /// Records this deployment's shard number when it has none, and the number of shards when
    /// more than recorded. Throws `.startFailed` when it was another shard (the `--redis` list was
    /// reordered: positions name shards by number) or a hub listed more shards (this hub's list
    /// is out of date: it would place channels where they no longer live).
    func checkShards(on c: RedisConnection) throws(MicroSSEError) {
        let recordedCount = Int(try c.command(["GET", shardCountKey]).text ?? "") ?? 1
        guard recordedCount <= settings.shardCount else {
            throw MicroSSEError(
                .startFailed,
                "Redis at \(settings.url) belongs to a cluster of \(recordedCount) shards, but this hub lists \(settings.shardCount): give every hub the same --redis list"
            )
        }
        guard let shard = settings.shard else { return }
        _ = try c.command(["SET", shardKey, String(shard), "NX"])
        let recorded = try c.command(["GET", shardKey]).text
        guard recorded == String(shard) else {
            throw MicroSSEError(
                .startFailed,
                "Redis at \(settings.url) is shard \(recorded ?? "?") of this cluster but listed as shard \(shard): keep the --redis list in the same order on every hub (add shards at its end)"
            )
        }
        if recordedCount < settings.shardCount {
            _ = try c.command(["SET", shardCountKey, String(settings.shardCount)])
        }
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
}
