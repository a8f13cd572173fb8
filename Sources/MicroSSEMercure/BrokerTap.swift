import Dispatch
import MicroSSECore
import MicroSSEWire
import Synchronization

/// A hub's own subscriber of one of the broker's channels: what the broker delivers to it is
/// read on a serial queue, parsed back into events and handed to `deliver`, in the channel's
/// order. A tap that falls more than ``limit`` bytes behind is failed by the broker like any
/// stream; it then subscribes again from the last id it read (the broker replays what follows,
/// or says it could not, which is logged).
final class BrokerTap: Sendable {
    /// An event as the tap read it.
    struct Read: Sendable {
        var id: String?
        var type: String?
        var data: String
    }

    /// The most bytes a tap may be behind (its subscriber's bound).
    static let limit = 64 << 20
    /// The largest event block the parser holds while it waits for the block's end.
    static let maxBlock = 16 << 20

    private struct State {
        var subscriber: Subscriber?
        var buffer: [UInt8] = []
        var lastID: String?
        var stopped = false
    }

    private let channel: ChannelName
    private let broker: any EventBroker
    private let queue: DispatchQueue
    private let deliver: @Sendable (Read) -> Void
    private let log: @Sendable (String) -> Void
    private let state = Mutex(State())
    private let scheduled = Atomic<Bool>(false)

    init(
        channel: ChannelName, broker: any EventBroker, queue: DispatchQueue,
        log: @escaping @Sendable (String) -> Void, deliver: @escaping @Sendable (Read) -> Void
    ) {
        self.channel = channel
        self.broker = broker
        self.queue = queue
        self.log = log
        self.deliver = deliver
    }

    /// Subscribes for live events.
    func start() { subscribe(after: nil) }

    /// Unsubscribes; nothing is delivered once the queue has run what it holds.
    func stop() {
        let subscriber = state.withLock { s -> Subscriber? in
            s.stopped = true
            defer { s.subscriber = nil }
            return s.subscriber
        }
        if let subscriber {
            broker.unsubscribe(subscriber)
            subscriber.detach()
        }
    }

    private func subscribe(after lastID: String?) {
        let subscriber = Subscriber(channels: [channel], limit: Self.limit)
        subscriber.attach(Connection(tap: self))
        let go = state.withLock { s -> Bool in
            guard !s.stopped else { return false }
            s.subscriber = subscriber
            s.buffer = []
            return true
        }
        guard go else { return }
        let channel = self.channel
        let log = self.log
        broker.subscribe(subscriber, after: lastID) { [weak self] status in
            if case .gap(let reason) = status, let lastID {
                log("mercure: the hub's reader of \(channel) resumed after \(lastID) with a gap (\(reason.rawValue))")
            }
            self?.schedule()
        }
        schedule()
    }

    fileprivate func schedule() {
        guard !scheduled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.async { [self] in
            scheduled.store(false, ordering: .releasing)
            drain()
        }
    }

    /// Reads what is queued until the subscriber has nothing more (it is then marked waiting,
    /// and the next event wakes it). Runs on the tap's queue.
    func drain() {
        guard let subscriber = state.withLock({ $0.stopped ? nil : $0.subscriber }) else { return }
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let action = buffer.withUnsafeMutableBytes { subscriber.read(into: $0, onSuspend: {}) }
            switch action {
            case .wrote(let n, _):
                parse(buffer[..<n])
            case .suspend:
                return
            case .end, .abort:
                let lastID = state.withLock { s -> String? in
                    s.subscriber = nil
                    return s.lastID
                }
                broker.unsubscribe(subscriber)
                subscriber.detach()
                log("mercure: the hub's reader of \(channel) fell behind; subscribing again")
                subscribe(after: lastID)
                return
            }
        }
    }

    /// Splits the bytes read into event blocks (`\n\n`-terminated: the broker writes whole
    /// frames, each line `\n`-terminated) and delivers each.
    private func parse(_ chunk: ArraySlice<UInt8>) {
        let blocks = state.withLock { s -> [[UInt8]] in
            s.buffer += chunk
            var blocks: [[UInt8]] = []
            var start = 0
            var i = 0
            let bytes = s.buffer
            while i + 1 < bytes.count {
                if bytes[i] == 0x0A && bytes[i + 1] == 0x0A {
                    blocks.append(Array(bytes[start...i]))
                    i += 2
                    start = i
                } else {
                    i += 1
                }
            }
            s.buffer.removeFirst(start)
            if s.buffer.count > Self.maxBlock { s.buffer = [] }
            return blocks
        }
        for block in blocks {
            guard let read = Self.read(block) else { continue }
            if let id = read.id { state.withLock { $0.lastID = id } }
            deliver(read)
        }
    }

    /// What the broker wakes: a connection of no socket, whose resume (and cut, when the tap
    /// fell behind) schedules a drain.
    private final class Connection: StreamConnection {
        weak let tap: BrokerTap?
        init(tap: BrokerTap) { self.tap = tap }
        func resume() { tap?.schedule() }
        func cut() { tap?.schedule() }
    }

    /// Every byte `subscriber` has queued (a probe's replay), read at once.
    static func readAll(_ subscriber: Subscriber) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while case .wrote(let n, _) = buffer.withUnsafeMutableBytes({ subscriber.read(into: $0, onSuspend: {}) }) {
            bytes += buffer[..<n]
        }
        return bytes
    }

    /// The event blocks of whole frames (each ends with an empty line).
    static func blocks(_ bytes: [UInt8]) -> [[UInt8]] {
        var blocks: [[UInt8]] = []
        var start = 0
        var i = 0
        while i + 1 < bytes.count {
            if bytes[i] == 0x0A && bytes[i + 1] == 0x0A {
                blocks.append(Array(bytes[start...i]))
                i += 2
                start = i
            } else {
                i += 1
            }
        }
        return blocks
    }

    /// One event block's fields (`id`, `event`, the `data` lines joined), or nil for a block
    /// without data (a comment).
    static func read(_ block: [UInt8]) -> Read? {
        var id: String?
        var type: String?
        var data: [String] = []
        for line in block.split(separator: 0x0A, omittingEmptySubsequences: false) where !line.isEmpty {
            let text = String(decoding: line, as: UTF8.self)
            let colon = text.firstIndex(of: ":") ?? text.endIndex
            let name = text[..<colon]
            var value = colon == text.endIndex ? Substring("") : text[text.index(after: colon)...]
            if value.hasPrefix(" ") { value = value.dropFirst() }
            switch name {
            case "id": id = String(value)
            case "event": type = String(value)
            case "data": data.append(String(value))
            default: continue
            }
        }
        guard !data.isEmpty else { return nil }
        return Read(id: id, type: type, data: data.joined(separator: "\n"))
    }
}
