import Dispatch
import MicroSSECore
import MicroSSEWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The threads that talk to Redis for libmicrohttpd's threads: publishes and resume replays
/// queue a job here and complete their deferred reply from a worker, so the polling thread never
/// waits on Redis. Each worker has its own command connection.
///
/// Publishes wait in a queue bounded by `capacity` (one that does not fit is refused, and the
/// route answers `503` with `Retry-After`) and run first: every subscriber waits for a publish,
/// one client for a resume. Resumes are not refused for lack of room: each holds only a stream
/// the hub already admitted (``MicroSSE/ServerConfiguration/maxClients`` bounds them), and
/// refusing one would start it live with a gap, losing what it missed, exactly when a hub's
/// streams all reconnect at once. While publishes keep waiting, every fifth job is a resume,
/// so resumes are never starved.
///
/// A worker takes every publish waiting (up to ``batchLimit`` of them, ``batchBytes`` of data)
/// and stores them with one call of the publish script: one round trip, in queue order.
final class RedisWorkers: Sendable {
    struct Job: Sendable {
        /// Runs on a worker with its command connection.
        let run: @Sendable (RedisBroker.CommandLane) -> Void
        /// Runs instead when the broker shuts down before a worker took the job.
        let cancel: @Sendable () -> Void
        /// A publish, stored with the others a worker takes at once (then `run` is not called).
        var item: RedisBroker.PublishItem? = nil
    }

    /// Publishes one script call stores at most, and their data bytes (a bigger one goes alone).
    static let batchLimit = 64
    static let batchBytes = 1 << 20

    enum Kind {
        case publish, resume
    }

    enum Refusal: Error {
        case full, closed
    }

    /// A first-in first-out queue with O(1) removal from the front.
    private struct Fifo {
        private var items: [Job?] = []
        private var head = 0

        var count: Int { items.count - head }

        mutating func push(_ job: Job) { items.append(job) }

        var peek: Job? { head < items.count ? items[head] : nil }

        mutating func pop() -> Job? {
            guard head < items.count else { return nil }
            defer {
                items[head] = nil
                head += 1
                if head == items.count {
                    items.removeAll(keepingCapacity: true)
                    head = 0
                } else if head >= 1_024 && head * 2 >= items.count {
                    items.removeFirst(head)
                    head = 0
                }
            }
            return items[head]
        }

        mutating func drain() -> [Job] {
            var all: [Job] = []
            while let job = pop() { all.append(job) }
            return all
        }
    }

    private struct Queue {
        var publishes = Fifo()
        var resumes = Fifo()
        /// Publishes run in a row while resumes wait.
        var publishStreak = 0
        var closed = false
        /// Workers waiting for a job: a new job wakes one of them, and only then (a worker that is
        /// busy takes what is queued when it is done, with no wake-up).
        var sleeping = 0

        /// The next job: a publish first, but a waiting resume after four publishes in a row.
        mutating func next() -> Job? {
            if publishes.count > 0 && (resumes.count == 0 || publishStreak < 4) {
                publishStreak += 1
                return publishes.pop()
            }
            publishStreak = 0
            return resumes.pop()
        }

        /// The next job, and when it is a publish, the publishes after it that fit its batch.
        mutating func nextBatch() -> [Job] {
            guard let first = next() else { return [] }
            guard first.item != nil else { return [first] }
            var batch = [first]
            var bytes = first.item!.event.data.utf8.count
            while batch.count < RedisWorkers.batchLimit, let more = publishes.peek, let item = more.item {
                bytes += item.event.data.utf8.count
                if bytes > RedisWorkers.batchBytes { break }
                batch.append(publishes.pop()!)
            }
            return batch
        }
    }

    let count: Int
    let capacity: Int
    private let queue = Mutex(Queue())
    private let ready = DispatchSemaphore(value: 0)
    /// The workers' threads (a publish made on one runs inline: it cannot wait for the others).
    private let threads = Mutex<[pthread_t]>([])
    /// Whether ``start(batch:)`` ran (before it, nothing would take a job).
    let started = Atomic<Bool>(false)

    init(count: Int, capacity: Int) {
        self.count = count
        self.capacity = capacity
    }

    /// Throws `.invalidArgument` when the count or the capacity is out of range (a ``RedisURL``
    /// whose ``RedisURL/workers`` or ``RedisURL/queueLimit`` was set out of range).
    func validate() throws(MicroSSEError) {
        guard RedisURL.workerRange.contains(count) else {
            throw MicroSSEError(.invalidArgument, "Redis workers must be 1-64 (got \(count))")
        }
        guard RedisURL.queueLimitRange.contains(capacity) else {
            throw MicroSSEError(.invalidArgument, "Redis queue limit must be 1-1000000 (got \(capacity))")
        }
    }

    /// Jobs waiting for a worker.
    var waiting: Int { queue.withLock { $0.publishes.count + $0.resumes.count } }

    /// Whether the calling thread is one of the workers.
    var onWorker: Bool {
        let me = pthread_self()
        return threads.withLock { $0.contains { pthread_equal($0, me) != 0 } }
    }

    /// Starts the workers (their connections are dialled by their first job); `batch` stores
    /// the publishes a worker takes at once.
    func start(
        batch: @escaping @Sendable ([RedisBroker.PublishItem], RedisBroker.CommandLane) -> Void
    ) throws(MicroSSEError) {
        started.store(true, ordering: .releasing)
        for index in 0..<count {
            let box = Unmanaged.passRetained(
                WorkerStart(workers: self, lane: RedisBroker.CommandLane(), batch: batch))
            var thread = pthread_t()
            let rc = pthread_create(
                &thread, nil,
                { raw in
                    let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                    start.workers.threads.withLock { $0.append(pthread_self()) }
                    start.workers.work(on: start.lane, batch: start.batch)
                    return nil
                }, box.toOpaque())
            guard rc == 0 else {
                box.release()
                shutdown()
                throw MicroSSEError(.startFailed, "cannot start Redis worker \(index) (error \(rc))")
            }
            pthread_detach(thread)
        }
    }

    /// Queues `job`, or says why not (``capacity`` publishes are waiting, or the broker shut
    /// down).
    func submit(_ job: Job, _ kind: Kind) -> Refusal? {
        let (refusal, wake) = queue.withLock { q -> (Refusal?, Bool) in
            if q.closed { return (.closed, false) }
            switch kind {
            case .publish:
                if q.publishes.count >= capacity { return (.full, false) }
                q.publishes.push(job)
            case .resume:
                q.resumes.push(job)
            }
            guard q.sleeping > 0 else { return (nil, false) }
            q.sleeping -= 1
            return (nil, true)
        }
        if wake { ready.signal() }
        return refusal
    }

    /// Refuses new jobs, cancels the queued ones, and lets every worker exit after its current
    /// job (without waiting for it).
    func shutdown() {
        let (dropped, sleeping) = queue.withLock { q -> ([Job], Int) in
            q.closed = true
            defer { q.sleeping = 0 }
            return (q.publishes.drain() + q.resumes.drain(), q.sleeping)
        }
        for job in dropped { job.cancel() }
        for _ in 0..<sleeping { ready.signal() }
    }

    private func work(
        on lane: RedisBroker.CommandLane,
        batch: @Sendable ([RedisBroker.PublishItem], RedisBroker.CommandLane) -> Void
    ) {
        while true {
            let (jobs, closed) = queue.withLock { q -> ([Job], Bool) in
                let jobs = q.nextBatch()
                if jobs.isEmpty && !q.closed { q.sleeping += 1 }
                return (jobs, q.closed)
            }
            if jobs.first?.item != nil {
                batch(jobs.compactMap(\.item), lane)
            } else if let job = jobs.first {
                job.run(lane)
            } else if closed {
                break
            } else {
                ready.wait()
            }
        }
        lane.slot.withLock { $0.connection = nil }
    }
}

/// What a new worker thread is handed.
private final class WorkerStart: Sendable {
    let workers: RedisWorkers
    let lane: RedisBroker.CommandLane
    let batch: @Sendable ([RedisBroker.PublishItem], RedisBroker.CommandLane) -> Void

    init(
        workers: RedisWorkers, lane: RedisBroker.CommandLane,
        batch: @escaping @Sendable ([RedisBroker.PublishItem], RedisBroker.CommandLane) -> Void
    ) {
        self.workers = workers
        self.lane = lane
        self.batch = batch
    }
}

/// The completion-based entry points libmicrohttpd's threads use (docs/DESIGN.md, the broker
/// seam): both return at once and complete from a worker.
extension RedisBroker {
    package var isAsynchronous: Bool { true }

    package func publish(
        _ event: Event, to channel: ChannelName,
        completion: @escaping @Sendable (Result<String, MicroSSEError>) -> Void
    ) {
        publishReceipt(event, to: channel) { completion($0.map(\.id)) }
    }

    /// Registers `subscriber` for live events before it returns (buffered while the replay is
    /// fetched); `completion` comes once the replay is queued. A shutdown starts the stream live
    /// with a gap event (an `EventSource` does not retry a `503`).
    package func subscribe(
        _ subscriber: Subscriber, after lastEventID: String?, completion: @escaping @Sendable (ResumeStatus) -> Void
    ) {
        switch register(subscriber, after: lastEventID) {
        case .done(let status):
            completion(status)
        case .replay(let lastEventID, let from):
            let live: @Sendable () -> ResumeStatus = {
                self.finishResume(subscriber, replay: [], gap: .unknown, lastEventID: lastEventID, after: .zero)
            }
            let job = RedisWorkers.Job(
                run: { lane in completion(self.resume(subscriber, lastEventID: lastEventID, from: from, on: lane)) },
                cancel: { completion(live()) })
            if workers.submit(job, .resume) != nil { completion(live()) }
        }
    }
}
