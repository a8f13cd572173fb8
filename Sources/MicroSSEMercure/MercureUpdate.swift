import MicroSSECore
import MicroSSEWire

/// One Mercure update as it travels from the hub it was published to, through the broker, to
/// every hub (docs/DESIGN.md, "Mercure"): the data of an event on the reserved channel
/// ``updatesChannel``, whose label is the update's id.
///
/// The envelope is text: header lines (`private`, `type T`, `retry N`, `subscription …`, one
/// `topic T` per topic), an empty line, then the update's data verbatim. Topics, types and ids
/// hold no control characters (the publish form refuses them), so a header never spans lines;
/// the data may hold any, since it comes last.
struct MercureUpdate: Sendable, Equatable {
    var id: String
    var topics: [String]
    var isPrivate = false
    var type: String?
    var retry: Int?
    var data: String
    /// For a subscription event: the subscription, and whether it begins or ends.
    var announcement: Announcement?

    struct Announcement: Sendable, Equatable {
        var active: Bool
        var subscription: Subscription
    }

    /// Where updates go between hubs: a channel no client can name (`:` is outside the rule).
    static let updatesChannel = ChannelName(reserved: "mercure:updates")
    /// Where hubs say they are alive and hand each other their subscriptions (not stored for
    /// replay: only its live events matter).
    static let hubsChannel = ChannelName(reserved: "mercure:hubs")

    static let magic = "mercure-update 1"
    /// Header lines, at most: the topics and the other fields.
    static let maxHeaderLines = MercureSettings.maxTopicsPerUpdate + 8

    /// The event the hubs deliver to subscribers.
    func event() throws(MicroSSEError) -> Event {
        try Event(data: data, event: type, id: id, retry: retry)
    }

    var envelope: String {
        var text = Self.magic + "\n"
        if isPrivate { text += "private\n" }
        if let type { text += "type " + type + "\n" }
        if let retry { text += "retry " + String(retry) + "\n" }
        if let announcement {
            text += "subscription " + (announcement.active ? "1" : "0") + "\t" + announcement.subscription.line + "\n"
        }
        for topic in topics { text += "topic " + topic + "\n" }
        return text + "\n" + data
    }

    init(
        id: String, topics: [String], isPrivate: Bool = false, type: String? = nil, retry: Int? = nil, data: String,
        announcement: Announcement? = nil
    ) {
        self.id = id
        self.topics = topics
        self.isPrivate = isPrivate
        self.type = type
        self.retry = retry
        self.data = data
        self.announcement = announcement
    }

    /// The update an envelope carries, with its id (the event's label), or nil when it is not
    /// one (a foreign event on the channel, or a newer format).
    init?(envelope: String, id: String) {
        var rest = Substring(envelope)
        guard let first = rest.firstIndex(of: "\n"), rest[..<first] == Self.magic else { return nil }
        rest = rest[rest.index(after: first)...]
        self.id = id
        self.topics = []
        self.data = ""
        var lines = 0
        while let end = rest.firstIndex(of: "\n") {
            let line = rest[..<end]
            rest = rest[rest.index(after: end)...]
            if line.isEmpty {
                data = String(rest)
                return
            }
            lines += 1
            guard lines <= Self.maxHeaderLines else { return nil }
            let space = line.firstIndex(of: " ") ?? line.endIndex
            let name = line[..<space]
            let value = space == line.endIndex ? "" : String(line[line.index(after: space)...])
            switch name {
            case "private": isPrivate = true
            case "type": type = value
            case "retry": retry = Int(value)
            case "topic": topics.append(value)
            case "subscription":
                guard let tab = value.firstIndex(of: "\t"),
                    let subscription = Subscription(line: value[value.index(after: tab)...])
                else { return nil }
                announcement = Announcement(active: value[..<tab] == "1", subscription: subscription)
            default: continue  // a later version's header: ignored
            }
        }
        return nil  // no end of headers
    }
}

/// One subscription of a stream (one matcher of its request), on the hub `hub`.
struct Subscription: Sendable, Hashable {
    /// The hub the stream is connected to.
    var hub: String
    /// Draft-08's matcher type (`exact`); nil for draft-07 (a topic selector).
    var matchType: String?
    var match: String
    var subscriber: String
    /// The token's payload for this subscription, as JSON text.
    var payload: String?

    static let basePath = MercureText.hubPath + "/subscriptions"

    /// Its topic, and its document's `id`: the RFC 6570 expansion (each variable
    /// percent-encoded once, as a whole).
    var iri: String {
        Self.basePath + "/" + (matchType.map { $0 + "/" } ?? "") + Self.encode(match) + "/" + Self.encode(subscriber)
    }

    /// ``iri`` as libmicrohttpd hands a request's path (percent-decoded), and its collection's.
    var decodedPath: String { decodedCollection + "/" + subscriber }
    var decodedCollection: String { Self.basePath + "/" + (matchType.map { $0 + "/" } ?? "") + match }
    var collection: String { Self.basePath + "/" + (matchType.map { $0 + "/" } ?? "") + Self.encode(match) }

    /// The subscription's document (draft-08 JSON, or draft-07 JSON-LD without `@context`
    /// when `nested`).
    func document(active: Bool, nested: Bool = false) -> String {
        var members: [(String, String)] = []
        if matchType == nil && !nested { members.append(("@context", JSON.quote("https://mercure.rocks/"))) }
        members.append(("id", JSON.quote(iri)))
        if let matchType {
            members += [
                ("type", JSON.quote("subscription")), ("match_type", JSON.quote(matchType)),
                ("match", JSON.quote(match)),
            ]
        } else {
            members += [("type", JSON.quote("Subscription")), ("topic", JSON.quote(match))]
        }
        members += [("subscriber", JSON.quote(subscriber)), ("active", active ? "true" : "false")]
        if let payload { members.append(("payload", payload)) }
        return JSON.object(members)
    }

    /// One line, tab-separated (none of the fields holds a tab or a line break: matchers and
    /// ids refuse control characters, a payload is compact JSON).
    var line: String { [hub, matchType ?? "", match, subscriber, payload ?? ""].joined(separator: "\t") }

    init(hub: String, matchType: String?, match: String, subscriber: String, payload: String?) {
        self.hub = hub
        self.matchType = matchType
        self.match = match
        self.subscriber = subscriber
        self.payload = payload
    }

    init?(line: Substring) {
        let fields = line.split(separator: "\t", maxSplits: 4, omittingEmptySubsequences: false)
        guard fields.count == 5, !fields[0].isEmpty, !fields[3].isEmpty else { return nil }
        hub = String(fields[0])
        matchType = fields[1].isEmpty ? nil : String(fields[1])
        match = String(fields[2])
        subscriber = String(fields[3])
        payload = fields[4].isEmpty ? nil : String(fields[4])
    }

    /// Percent-encodes every byte but the unreserved ones (RFC 6570 simple expansion).
    static func encode(_ value: String) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(value.utf8.count)
        for b in value.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.append(b)
            default:
                out += [UInt8(ascii: "%"), digits[Int(b >> 4)], digits[Int(b & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
