import MicroSSECore
import Synchronization

/// One stream's replay from Redis, read a page at a time as the stream drains (see docs/DESIGN.md,
/// "Replay through cursors"): `next(budget:)` runs on libmicrohttpd's polling thread and never
/// waits for Redis. It hands out the page a worker fetched ahead (``fetchPage(on:)``: `XRANGE` per
/// channel from its cursor up to the snapshot bound `upTo`, merged in id order up to the smallest
/// last id among the channels that filled their count) and answers `.waiting` while one is on
/// its way; the worker's completion wakes the stream. Each page re-checks its channels' trim: a
/// channel that dropped events after its cursor gets an `evicted` gap where they were. After the
/// pages come the live events that arrived while the resume was placed (`tail`).
final class RedisReplay: ReplaySource {
    let broker: RedisBroker
    /// Channel names, and whether frames are a stream of several channels' (positions only).
    let channels: [String]
    let composite: Bool
    /// The last entry the replay reads: later ones reach the stream through its log.
    let upTo: RedisStreamID
    let epoch: String?

    /// Entries a page asks each channel for (a page holds about 256 entries, at least 8 per
    /// channel, and at most ``RedisBroker/pageBytes`` of events).
    var pageCount: Int { max(8, 256 / max(1, channels.count)) }

    /// Where a channel's next page starts: its first entry to replay, or (`taken`) the last
    /// one replayed, read again to see it is still there (trimming drops the oldest entries
    /// first: while it is there, nothing after it was dropped).
    struct Start: Sendable {
        var id: RedisStreamID
        var taken: Bool
    }

    struct Place {
        /// Each channel's next page start, nil once it was read up to `upTo`.
        var starts: [Start?]
        var buffer: [Frame] = []
        var head = 0
        var fetching = false
        /// Live events held while the resume was placed, queued after the pages.
        var tail: [Frame]
        /// The last entry of the pages fetched (a gap event's id), and whether an event came
        /// since the last gap event (a second gap in a row says nothing).
        var last: RedisStreamID
        var sentSinceGap: Bool
        weak var subscriber: Subscriber?
    }
    let place: Mutex<Place>

    init(
        broker: RedisBroker, channels: [String], starts: [Start?], upTo: RedisStreamID, epoch: String?,
        after: RedisStreamID, tail: [Frame], toldGap: Bool
    ) {
        self.broker = broker
        self.channels = channels
        self.composite = channels.count > 1
        self.upTo = upTo
        self.epoch = epoch
        place = Mutex(Place(starts: starts, tail: tail, last: after, sentSinceGap: !toldGap))
    }

    /// Whether there is anything to replay.
    var isEmpty: Bool { place.withLock { $0.starts.allSatisfy { $0 == nil } && $0.tail.isEmpty } }

    /// The stream that reads the replay (woken when a page comes in).
    func attach(_ subscriber: Subscriber) { place.withLock { $0.subscriber = subscriber } }

    func next(budget: Int) -> ReplayChunk {
        let (chunk, fetch) = place.withLock { p -> (ReplayChunk, Bool) in
            if p.head == p.buffer.count && p.starts.allSatisfy({ $0 == nil }) && !p.fetching && !p.tail.isEmpty {
                p.buffer = p.tail
                p.head = 0
                p.tail = []
            }
            guard p.head < p.buffer.count else {
                if p.starts.allSatisfy({ $0 == nil }) && !p.fetching { return (.done, false) }
                defer { p.fetching = true }
                return (.waiting, !p.fetching)
            }
            var bytes = 0
            var end = p.head
            while end < p.buffer.count && (end == p.head || bytes + p.buffer[end].bytes.count <= budget) {
                bytes += p.buffer[end].bytes.count
                end += 1
            }
            let frames = Array(p.buffer[p.head..<end])
            p.head = end
            if p.head == p.buffer.count {
                p.buffer.removeAll()
                p.head = 0
            }
            // Half a page left: the next one is fetched meanwhile.
            let low = p.buffer.count - p.head < pageCount * channels.count / 2
            let fetch = low && !p.fetching && p.starts.contains { $0 != nil }
            if fetch { p.fetching = true }
            return (.frames(frames), fetch)
        }
        if fetch { broker.replayPager.request(self) }
        return chunk
    }

    /// Fetches the next page on a worker's connection, appends it and wakes the stream.
    func fetchPage(on lane: RedisBroker.CommandLane) {
        let (starts, last) = place.withLock { ($0.starts, $0.last) }
        var frames: [Frame] = []
        var next: [Start?] = starts.map { _ in nil }
        do {
            let page = try broker.replayPage(self, starts: starts, on: lane)
            next = page.starts
            if note(last: page.last, gap: page.gap) {
                frames.append(
                    ResumeStatus.gapFrame(lastEventID: broker.positionID(last, epoch: epoch), reason: .evicted))
            }
            frames += page.frames
        } catch {
            broker.log("replay from Redis failed (\(error.message)); the stream goes on live with a gap event")
            frames = [ResumeStatus.gapFrame(lastEventID: broker.positionID(last, epoch: epoch), reason: .evicted)]
        }
        finish(frames, starts: next)
    }

    /// Appends a fetched page (the broker shut down: none, and the replay is over) and wakes
    /// the stream.
    func finish(_ page: [Frame], starts: [Start?]) {
        let subscriber = place.withLock { p -> Subscriber? in
            p.buffer.append(contentsOf: page)
            p.starts = starts
            p.fetching = false
            return p.subscriber
        }
        subscriber?.replayArrived()
    }

    /// Records a page: its last entry, and whether it starts with a gap event (not right
    /// after another one: a second gap in a row says nothing).
    func note(last: RedisStreamID?, gap: Bool) -> Bool {
        place.withLock { p in
            let told = gap && p.sentSinceGap
            if told { p.sentSinceGap = false }
            if let last {
                p.last = last
                p.sentSinceGap = true
            }
            return told
        }
    }

}

/// Bounds the page fetches of one broker (one Redis deployment) in flight, at most ``limit``: 600
/// resumes do not flood its workers (publishes run first anyway); the others wait in order.
final class ReplayPager: Sendable {
    static let limit = 8
    private struct State {
        var running = 0
        var waiting: [RedisReplay] = []
        var head = 0
    }
    private let state = Mutex(State())

    func request(_ replay: RedisReplay) {
        let start = state.withLock { s -> Bool in
            if s.running < Self.limit {
                s.running += 1
                return true
            }
            s.waiting.append(replay)
            return false
        }
        if start { submit(replay) }
    }

    private func submit(_ replay: RedisReplay) {
        let job = RedisWorkers.Job(
            run: { lane in
                replay.fetchPage(on: lane)
                self.done()
            },
            cancel: {
                replay.finish([], starts: replay.channels.map { _ in nil })
                self.done()
            })
        if replay.broker.workers.submit(job, .resume) != nil { job.cancel() }
    }

    private func done() {
        let next = state.withLock { s -> RedisReplay? in
            guard s.head < s.waiting.count else {
                s.running -= 1
                return nil
            }
            defer {
                s.head += 1
                if s.head == s.waiting.count {
                    s.waiting.removeAll(keepingCapacity: true)
                    s.head = 0
                }
            }
            return s.waiting[s.head]
        }
        if let next { submit(next) }
    }
}
