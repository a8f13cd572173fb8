import MicroSSECore
import MicroSSEWire
import Synchronization

/// A topic as its bytes: topics are compared byte for byte, while Swift's `String` equality
/// is canonical equivalence (`é` precomposed equals `e` and a combining accent).
struct Topic: Hashable, Sendable {
    let bytes: [UInt8]

    init(_ text: String) { bytes = Array(text.utf8) }

    /// The bytes hashed as one block (an array hashes element by element: a call per byte, on
    /// every index lookup and verdict cache probe of every publish).
    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

/// A Mercure stream's routing: the exact topics it asked for, or every topic (`*`).
struct Matchers: Sendable, Hashable {
    var all = false
    var exact: Set<Topic> = []
    /// Draft-07 URI template selectors.
    var templates: Set<URITemplate> = []
    /// Draft-08 `match_urlpattern` matchers.
    var patterns: Set<URLPattern> = []
}

/// What a stream receives: its matchers and what its token lets it read. Streams with equal
/// keys receive exactly the same updates, so they read one log.
struct FeedKey: Hashable, Sendable {
    let matchers: Matchers
    let grant: TopicGrant

    func wants(_ update: MercureBus.Update, _ s: inout MercureBus.State) -> Bool {
        var reader = URLPatternCache.Reader(base: s.base)
        let routed =
            matchers.all
            || update.topics.contains { topic in
                matchers.exact.contains(topic) || matchers.templates.contains { s.cache.matches($0, topic) }
                    || matchers.patterns.contains { s.patternCache.matches($0, topic, &reader) }
            }
        return routed && (!update.isPrivate || grant.matchesAny(update.topics))
    }
}

/// The Mercure hub's fan-out and history (docs/DESIGN.md, "Mercure"), under one lock:
///
/// - streams with the same matchers and the same grant share a **feed**: one log
///   (`LogReaders`, as a channel's) that each reads through its own cursor, so an update costs
///   one append per feed, whatever the number of streams reading it;
/// - an index `topic → feeds` for exact matchers and a set of `*` feeds, so a publish looks up
///   its topics instead of visiting every feed; draft-07 template selectors are grouped by
///   template and matched per update through a bounded cache of verdicts; a feed matching
///   several topics of one update gets it once (each feed remembers the last update appended);
/// - a private update only for feeds whose grant covers one of its topics;
/// - one hub-wide history of updates, bounded by count and bytes (frame, topics, id), replayed
///   and joined to live updates under the same lock (nothing falls between, nothing arrives
///   twice).
///
/// The readers are looked at under the lock (publish order on every log); the suspended ones
/// are woken after it (`LogFanOut.finish`), since resuming takes libmicrohttpd's locks.
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

    /// The streams of one ``FeedKey`` and their log. Kept under the bus's lock.
    final class Feed {
        let key: FeedKey
        var readers = LogReaders()
        /// The sequence number of the last update appended.
        var lastSeq: UInt64

        init(key: FeedKey, seq: UInt64) {
            self.key = key
            self.lastSeq = seq
        }

        var id: ObjectIdentifier { ObjectIdentifier(self) }
    }

    struct State {
        var feeds: [FeedKey: Feed] = [:]
        /// Each open stream's feed, by subscriber id.
        var streams: [UInt64: Feed] = [:]
        var exact: [Topic: [ObjectIdentifier: Feed]] = [:]
        var wildcard: [ObjectIdentifier: Feed] = [:]
        /// Template selectors, each with the feeds that use it (matched per update, cached).
        var templated: [Topic: (template: URITemplate, feeds: [ObjectIdentifier: Feed])] = [:]
        var cache = TemplateCache()
        /// URL-pattern matchers, each with the feeds that use it (matched per update, cached).
        var patterned: [Topic: (pattern: URLPattern, feeds: [ObjectIdentifier: Feed])] = [:]
        var patternCache = URLPatternCache()
        /// The hub's URL, which relative patterns and topics are read against.
        let base: URLParts
        /// The history: `history[head...]` is live, oldest first.
        var history: [Update] = []
        var head = 0
        var historyBytes = 0
        var seq: UInt64 = 0
        /// The id of the last update published (kept or not by the history).
        var lastID: String?

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

        /// The feed of `key`, made and indexed when absent.
        mutating func feed(_ key: FeedKey) -> Feed {
            if let feed = feeds[key] { return feed }
            let feed = Feed(key: key, seq: seq)
            feeds[key] = feed
            let id = feed.id
            if key.matchers.all {
                wildcard[id] = feed
            } else {
                for topic in key.matchers.exact { exact[topic, default: [:]][id] = feed }
                for template in key.matchers.templates {
                    templated[template.source, default: (template, [:])].feeds[id] = feed
                }
                for pattern in key.matchers.patterns {
                    patterned[pattern.source, default: (pattern, [:])].feeds[id] = feed
                }
            }
            return feed
        }

        /// Forgets a feed no stream reads any more.
        mutating func drop(_ feed: Feed) {
            let key = feed.key
            let id = feed.id
            feeds[key] = nil
            wildcard[id] = nil
            for topic in key.matchers.exact {
                exact[topic]?[id] = nil
                if exact[topic]?.isEmpty == true { exact[topic] = nil }
            }
            for template in key.matchers.templates {
                templated[template.source]?.feeds[id] = nil
                if templated[template.source]?.feeds.isEmpty == true { templated[template.source] = nil }
            }
            for pattern in key.matchers.patterns {
                patterned[pattern.source]?.feeds[id] = nil
                if patterned[pattern.source]?.feeds.isEmpty == true { patterned[pattern.source] = nil }
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
    private let state: Mutex<State>

    /// `base`: the hub's URL (``HubURL``), for URL-pattern matchers.
    init(historyCount: Int, historyBytes: Int, base: URLParts = HubURL.base(nil)) {
        self.maxCount = historyCount
        self.maxBytes = historyBytes
        self.state = Mutex(State(base: base))
    }

    /// Stores `event` (whose id is set) as an update of `topics` and appends it to every feed
    /// that matches one of them and may read it.
    func publish(_ event: Event, topics: [Topic], isPrivate: Bool) {
        let frame = Frame(bytes: EventEncoder.encode(event), isEvent: true)
        let fanOut = state.withLock { s -> LogFanOut in
            var fanOut = LogFanOut()
            s.seq += 1
            let update = Update(seq: s.seq, id: event.id ?? "", topics: topics, isPrivate: isPrivate, frame: frame)
            s.lastID = update.id
            if maxCount > 0 && update.cost <= maxBytes {
                s.history.append(update)
                s.historyBytes += update.cost
                s.evict(maxCount: maxCount, maxBytes: maxBytes)
            }
            func deliver(_ feed: Feed) {
                guard feed.lastSeq != update.seq else { return }
                feed.lastSeq = update.seq
                guard !update.isPrivate || feed.key.grant.matchesAny(topics) else { return }
                feed.readers.append(frame, into: &fanOut)
            }
            for topic in topics {
                if let feeds = s.exact[topic] { for feed in feeds.values { deliver(feed) } }
            }
            for feed in s.wildcard.values { deliver(feed) }
            for entry in s.templated.values where topics.contains(where: { s.cache.matches(entry.template, $0) }) {
                for feed in entry.feeds.values { deliver(feed) }
            }
            if !s.patterned.isEmpty {
                var reader = URLPatternCache.Reader(base: s.base)
                for entry in s.patterned.values
                where topics.contains(where: { s.patternCache.matches(entry.pattern, $0, &reader) }) {
                    for feed in entry.feeds.values { deliver(feed) }
                }
            }
            return fanOut
        }
        fanOut.finish()
    }

    /// Queues the replay `lastEventID` asks for (nil: none) and makes the stream read its feed
    /// from the next update on, atomically. A replay larger than the stream's free bytes keeps
    /// its newest updates, and the cursor then names the update just before the first one sent.
    /// `fetched`: the updates the broker holds after `lastEventID`, for an id this hub has not
    /// seen (it joined the cluster later); they come first, then what this hub got since.
    func subscribe(
        _ subscriber: Subscriber, matchers: Matchers, grant: TopicGrant, lastEventID: String?,
        fetched: [Update]? = nil
    ) -> Placement {
        let key = FeedKey(matchers: matchers, grant: grant)
        return state.withLock { s in
            var placement = Placement.live
            if let lastEventID {
                let retained = s.retained
                var start = retained.startIndex
                var cursor = Self.earliest
                var candidates: ArraySlice<Update>
                if let fetched {
                    var known = Set(fetched.map(\.id))
                    known.insert(lastEventID)
                    let tail = retained.lastIndex { known.contains($0.id) }.map { retained[($0 + 1)...] } ?? retained
                    candidates = ArraySlice(fetched + tail.filter { !known.contains($0.id) })
                    cursor = lastEventID
                } else {
                    if !lastEventID.utf8.elementsEqual(Self.earliest.utf8),
                        let found = retained.firstIndex(where: { $0.id.utf8.elementsEqual(lastEventID.utf8) })
                    {
                        start = found + 1
                        cursor = lastEventID
                    }
                    candidates = retained[start...]
                }
                let replay = candidates.filter { key.wants($0, &s) }
                var first = replay.count
                var room = subscriber.freeBytes
                while first > 0 && replay[first - 1].frame.bytes.count <= room {
                    room -= replay[first - 1].frame.bytes.count
                    first -= 1
                }
                if first > 0 {
                    // The oldest replayed updates did not fit: the cursor is the update before
                    // the first one sent.
                    if fetched != nil {
                        cursor = replay[first - 1].id
                    } else if let cut = retained.firstIndex(where: { $0.seq == replay[first].seq }) {
                        cursor = cut > retained.startIndex ? retained[cut - 1].id : Self.earliest
                    }
                }
                for update in replay[first...] { subscriber.enqueue(update.frame) }
                placement = .cursor(cursor)
            }
            let feed = s.feed(key)
            feed.readers.insert(subscriber)
            s.streams[subscriber.id] = feed
            return placement
        }
    }

    /// Whether the history holds an update with `id`.
    func holds(_ id: String) -> Bool {
        state.withLock { s in s.retained.contains { $0.id.utf8.elementsEqual(id.utf8) } }
    }

    /// Forgets a stream whose connection is gone; a feed no stream reads goes with it.
    func remove(_ subscriber: Subscriber) {
        state.withLock { s in
            guard let feed = s.streams.removeValue(forKey: subscriber.id) else { return }
            feed.readers.remove(subscriber)
            if feed.readers.isEmpty { s.drop(feed) }
        }
    }

    /// The id of the last update published, or nil before the first.
    var lastID: String? { state.withLock { $0.lastID } }

    /// Streams registered now, and the feeds they read (for tests).
    var counts: (streams: Int, feeds: Int) { state.withLock { ($0.streams.count, $0.feeds.count) } }
}
