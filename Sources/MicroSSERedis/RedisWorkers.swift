import Dispatch
import MicroSSECore
import MicroSSEWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The threads that talk to Redis for libmicrohttpd's threads: publishes and resume replays
/// queue a job here and complete their deferred reply from a worker, so the polling thread never
/// waits on Redis. Each worker has its own command connection; the queue is bounded (a job that
/// does not fit is refused, and the route answers `503` with `Retry-After`).
final class RedisWorkers: Sendable {
    struct Job: Sendable {
        /// Runs on a worker with its command connection.
        let run: @Sendable (RedisBroker.CommandLane) -> Void
        /// Runs instead when the broker shuts down before a worker took the job.
        let cancel: @Sendable () -> Void
    }

    enum Refusal: Error {
        case full, closed
    }

    private struct Queue {
        var jobs: [Job] = []
        var closed = false
    }

    let count: Int
    let capacity: Int
    private let queue = Mutex(Queue())
    private let ready = DispatchSemaphore(value: 0)

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
    var waiting: Int { queue.withLock { $0.jobs.count } }

    /// Starts the workers (their connections are dialled by their first job).
    func start() throws(MicroSSEError) {
        for index in 0..<count {
            let box = Unmanaged.passRetained(WorkerStart(workers: self, lane: RedisBroker.CommandLane()))
            var thread = pthread_t()
            let rc = pthread_create(
                &thread, nil,
                { raw in
                    let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                    start.workers.work(on: start.lane)
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

    /// Queues `job`, or says why not (the queue is full, or the broker shut down).
    func submit(_ job: Job) -> Refusal? {
        let refusal = queue.withLock { q -> Refusal? in
            if q.closed { return .closed }
            if q.jobs.count >= capacity { return .full }
            q.jobs.append(job)
            return nil
        }
        if refusal == nil { ready.signal() }
        return refusal
    }

    /// Refuses new jobs, cancels the queued ones, and lets every worker exit after its current
    /// job (without waiting for it).
    func shutdown() {
        let dropped = queue.withLock { q -> [Job] in
            q.closed = true
            defer { q.jobs = [] }
            return q.jobs
        }
        for job in dropped { job.cancel() }
        for _ in 0..<count { ready.signal() }
    }

    private func work(on lane: RedisBroker.CommandLane) {
        while true {
            ready.wait()
            let (job, closed) = queue.withLock { q -> (Job?, Bool) in
                (q.jobs.isEmpty ? nil : q.jobs.removeFirst(), q.closed)
            }
            if let job {
                job.run(lane)
            } else if closed {
                break
            }
        }
        lane.slot.withLock { $0.connection = nil }
    }
}

/// What a new worker thread is handed.
private final class WorkerStart: Sendable {
    let workers: RedisWorkers
    let lane: RedisBroker.CommandLane

    init(workers: RedisWorkers, lane: RedisBroker.CommandLane) {
        self.workers = workers
        self.lane = lane
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
        let job = RedisWorkers.Job(
            run: { lane in
                do throws(MicroSSEError) {
                    completion(.success(try self.publish(event, to: channel, on: lane)))
                } catch {
                    completion(.failure(error))
                }
            },
            cancel: { completion(.failure(MicroSSEError(.unavailable, "the server is shutting down"))) })
        switch workers.submit(job) {
        case nil: break
        case .closed: completion(.failure(MicroSSEError(.unavailable, "the server is shutting down")))
        case .full:
            completion(
                .failure(
                    MicroSSEError(.unavailable, "\(workers.capacity) Redis commands are already waiting; retry")))
        }
    }

    /// Registers `subscriber` for live events before it returns (buffered while the replay is
    /// fetched); `completion` comes once the replay is queued. A full queue or a shutdown starts
    /// the stream live with a gap event (an `EventSource` does not retry a `503`).
    package func subscribe(
        _ subscriber: Subscriber, after lastEventID: String?, completion: @escaping @Sendable (ResumeStatus) -> Void
    ) {
        switch register(subscriber, after: lastEventID) {
        case .done(let status):
            completion(status)
        case .replay(let lastEventID, let position):
            let live: @Sendable () -> ResumeStatus = {
                self.finishResume(subscriber, replay: [], gap: .unknown, lastEventID: lastEventID, after: position)
            }
            let job = RedisWorkers.Job(
                run: { lane in completion(self.resume(subscriber, lastEventID: lastEventID, after: position, on: lane))
                },
                cancel: { completion(live()) })
            if let refusal = workers.submit(job) {
                if refusal == .full { log("Redis work queue full; a resuming stream starts live with a gap event") }
                completion(live())
            }
        }
    }
}
