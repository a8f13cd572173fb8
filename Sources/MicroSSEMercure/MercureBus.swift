import MicroSSECore
import MicroSSEWire
import Synchronization

/// A topic as its bytes: topics are compared byte for byte, while Swift's `String` equality
/// is canonical equivalence (`é` precomposed equals `e` and a combining accent).
struct Topic: Hashable, Sendable {
    let bytes: [UInt8]

    init(_ text: String) { bytes = Array(text.utf8) }
}

/// A Mercure stream's routing: the exact topics it asked for, or every topic (`*`).
struct Matchers: Sendable, Equatable {
    var all = false
    var exact: Set<Topic> = []
    /// Draft-07 URI template selectors.
    var templates: Set<URITemplate> = []
}

/// The Mercure hub's fan-out and history (docs/DESIGN.md, "Mercure"), under one lock:
///
/// - an index `topic → streams` for exact matchers and a set of `*` streams, so a publish looks
///   up its topics instead of visiting every stream; draft-07 template selectors are grouped by
///   template and matched per update through a bounded cache of verdicts; a stream matching
///   several topics of one update gets it once (each stream remembers the last update queued
///   for it);
/// - a private update only for streams whose grant covers one of its topics;
/// - one hub-wide history of updates, bounded by count and bytes (frame, topics, id), replayed and joined to
///   live updates under the same lock (nothing falls between, nothing arrives twice).
///
/// Frames are queued with `deferWake` under the lock (publish order on every stream); the
/// suspended streams are woken after it, since resuming takes libmicrohttpd's locks.
final class MercureBus: Sendable {
    struct Update {
        let seq: UInt64
        let id: String
        let topics: [Topic]
        let isPrivate: Bool
        let frame: Frame

        /// The bytes the history accounts for it: its frame, its topics and its id.
        var cost: Int { frame.bytes.count + id.utf8.count + topics.reduce(0) { $0 + $1.bytes.count } }
    }

    struct Stream {
        let subscriber: Subscriber
        let matchers: Matchers
        let grant: TopicGrant
        /// The sequence number of the last update queued for the stream.
        var lastSeq: UInt64 = 0

        func wants(_ update: Update, _ cache: inout TemplateCache) -> Bool {
            let routed =
                matchers.all
                || update.topics.contains { topic in
                    matchers.exact.contains(topic) || matchers.templates.contains { cache.matches($0, topic) }
                }
            return routed && (!update.isPrivate || grant.matchesAny(update.topics))
        }
    }

    struct State {
        var streams: [UInt64: Stream] = [:]
        var exact: [Topic: Set<UInt64>] = [:]
        var wildcard: Set<UInt64> = []
        /// Template selectors, each with the streams that use it (matched per update, cached).
        var templated: [Topic: (template: URITemplate, streams: Set<UInt64>)] = [:]
        var cache = TemplateCache()
        /// The history: `history[head...]` is live, oldest first.
        var history: [Update] = []
        var head = 0
        var historyBytes = 0
        var seq: UInt64 = 0

        var retained: ArraySlice<Update> { history[head...] }

        mutating func evict(maxCount: Int, maxBytes: Int) {
            while history.count - head > maxCount || (historyBytes > maxBytes && head < history.count) {
                historyBytes -= history[head].cost
                head += 1
            }
            if head > 64 && head * 2 > history.count {
                history.removeFirst(head)
                head = 0
            }
        }
    }

    /// What a subscribe placed: the value of the cursor header (`Mercure-Last-Event-ID`).
    enum Placement: Equatable {
        /// No `Last-Event-ID` was given: no replay, no header.
        case live
        /// The id just before the first replayed update, or `earliest` when the request could
        /// not be placed (an id the history no longer holds, or `earliest` asked for).
        case cursor(String)
    }

    static let earliest = "earliest"

    private let maxCount: Int
    private let maxBytes: Int
    private let state = Mutex(State())

    init(historyCount: Int, historyBytes: Int) {
        self.maxCount = historyCount
        self.maxBytes = historyBytes
    }

    /// Stores `event` (whose id is set) as an update of `topics` and queues it for every stream
    /// that matches one of them and may read it.
    func publish(_ event: Event, topics: [Topic], isPrivate: Bool) {
        let frame = Frame(bytes: EventEncoder.encode(event), isEvent: true)
        var toWake: [Subscriber] = []
        state.withLock { s in
            s.seq += 1
            let update = Update(seq: s.seq, id: event.id ?? "", topics: topics, isPrivate: isPrivate, frame: frame)
            if maxCount > 0 && update.cost <= maxBytes {
                s.history.append(update)
                s.historyBytes += update.cost
                s.evict(maxCount: maxCount, maxBytes: maxBytes)
            }
            func deliver(_ id: UInt64) {
                guard var stream = s.streams[id], stream.lastSeq != update.seq else { return }
                stream.lastSeq = update.seq
                s.streams[id] = stream
                guard !update.isPrivate || stream.grant.matchesAny(topics) else { return }
                switch stream.subscriber.enqueue(frame, deferWake: true) {
                case .wake, .overflow(wake: true): toWake.append(stream.subscriber)
                case .none, .overflow(wake: false), .closed: break
                }
            }
            for topic in topics {
                if let ids = s.exact[topic] { for id in ids { deliver(id) } }
            }
            for id in s.wildcard { deliver(id) }
            for (key, entry) in s.templated where topics.contains(where: { s.cache.matches(entry.template, $0) }) {
                for id in s.templated[key]?.streams ?? [] { deliver(id) }
            }
        }
        for subscriber in toWake { subscriber.wake() }
    }

    /// Queues the replay `lastEventID` asks for (nil: none) and registers the stream for live
    /// updates, atomically. A replay larger than the stream's free bytes keeps its newest
    /// updates, and the cursor then names the update just before the first one sent.
    func subscribe(
        _ subscriber: Subscriber, matchers: Matchers, grant: TopicGrant, lastEventID: String?
    ) -> Placement {
        state.withLock { s in
            var stream = Stream(subscriber: subscriber, matchers: matchers, grant: grant, lastSeq: s.seq)
            var placement = Placement.live
            if let lastEventID {
                let retained = s.retained
                var start = retained.startIndex
                var cursor = Self.earliest
                if !lastEventID.utf8.elementsEqual(Self.earliest.utf8),
                    let found = retained.firstIndex(where: { $0.id.utf8.elementsEqual(lastEventID.utf8) })
                {
                    start = found + 1
                    cursor = lastEventID
                }
                let replay = retained[start...].filter { stream.wants($0, &s.cache) }
                var first = replay.count
                var room = subscriber.freeBytes
                while first > 0 && replay[first - 1].frame.bytes.count <= room {
                    room -= replay[first - 1].frame.bytes.count
                    first -= 1
                }
                if first > 0, let cut = retained.firstIndex(where: { $0.seq == replay[first].seq }) {
                    // The oldest replayed updates did not fit: the cursor is the update before
                    // the first one sent.
                    cursor = cut > retained.startIndex ? retained[cut - 1].id : Self.earliest
                }
                for update in replay[first...] { subscriber.enqueue(update.frame) }
                placement = .cursor(cursor)
            }
            stream.lastSeq = s.seq
            let id = subscriber.id
            s.streams[id] = stream
            if matchers.all {
                s.wildcard.insert(id)
            } else {
                for topic in matchers.exact { s.exact[topic, default: []].insert(id) }
                for template in matchers.templates {
                    s.templated[template.source, default: (template, [])].streams.insert(id)
                }
            }
            return placement
        }
    }

    /// Forgets a stream whose connection is gone.
    func remove(_ subscriber: Subscriber) {
        state.withLock { s in
            let id = subscriber.id
            guard let stream = s.streams.removeValue(forKey: id) else { return }
            s.wildcard.remove(id)
            for topic in stream.matchers.exact {
                s.exact[topic]?.remove(id)
                if s.exact[topic]?.isEmpty == true { s.exact[topic] = nil }
            }
            for template in stream.matchers.templates {
                s.templated[template.source]?.streams.remove(id)
                if s.templated[template.source]?.streams.isEmpty == true { s.templated[template.source] = nil }
            }
        }
    }

    /// Streams registered now (for tests).
    var streamCount: Int { state.withLock { $0.streams.count } }
}
