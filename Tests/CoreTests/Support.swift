import MicroSSECore
import MicroSSEWire
import Synchronization
import Testing

/// A clock for ``MemoryBroker`` that only moves when a test says so.
final class FakeClock: Sendable {
    private let value: Atomic<UInt64>
    init(_ start: UInt64) { value = Atomic(start) }
    func advance(_ micros: UInt64) { value.add(micros, ordering: .relaxed) }
    var now: @Sendable () -> UInt64 { { [self] in value.load(ordering: .relaxed) } }
}

/// A connection whose resume and cut run the test's functions (the transport's stream object
/// stands here: a subscriber's connection is whatever is attached to it).
final class TestConnection: StreamConnection {
    let waker: (@Sendable () -> Void)?
    let closer: (@Sendable () -> Void)?
    init(waker: (@Sendable () -> Void)? = nil, closer: (@Sendable () -> Void)? = nil) {
        self.waker = waker
        self.closer = closer
    }
    func resume() { waker?() }
    func cut() { closer?() }
}

extension Subscriber {
    /// Attaches a test connection whose resume runs `wake`.
    func setWaker(_ wake: @escaping @Sendable () -> Void) { attach(TestConnection(waker: wake)) }
    /// Attaches a test connection whose cut runs `close`.
    func setCloser(_ close: @escaping @Sendable () -> Void) { attach(TestConnection(closer: close)) }
    /// Attaches a test connection with both.
    func setConnection(waker: @escaping @Sendable () -> Void, closer: @escaping @Sendable () -> Void) {
        attach(TestConnection(waker: waker, closer: closer))
    }

    /// The content reader's read into a buffer of `max` bytes, whose bytes go to `write`.
    func read(max: Int, write: (ArraySlice<UInt8>) -> Void, onSuspend: () -> Void) -> SubscriberQueue.ReadAction {
        var buffer = [UInt8](repeating: 0, count: Swift.max(0, max))
        let action = buffer.withUnsafeMutableBytes { read(into: $0, onSuspend: onSuspend) }
        if case .wrote(let n, _) = action { write(buffer[..<n]) }
        return action
    }
}

extension SubscriberQueue {
    /// ``read(into:)`` into a buffer of `max` bytes, whose bytes go to `write`.
    mutating func read(max: Int, write: (ArraySlice<UInt8>) -> Void) -> ReadAction {
        var buffer = [UInt8](repeating: 0, count: Swift.max(0, max))
        let action = buffer.withUnsafeMutableBytes { read(into: $0) }
        if case .wrote(let n, _) = action { write(buffer[..<n]) }
        return action
    }
}

/// Counts wake-ups a subscriber asks for (standing in for the transport's resume).
final class WakeCounter: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func install(on subscriber: Subscriber) {
        subscriber.setWaker { [self] in count.add(1, ordering: .relaxed) }
    }
}

func frame(_ text: String, isEvent: Bool = true) -> Frame {
    Frame(bytes: Array(text.utf8), isEvent: isEvent)
}

extension SubscriberQueue {
    /// Reads everything queued (as the content reader would, `max` bytes per call) as text.
    mutating func drain(max: Int = 1 << 20) -> (text: String, last: ReadAction) {
        var bytes: [UInt8] = []
        while true {
            let action = read(max: max) { bytes += $0 }
            if case .wrote = action { continue }
            return (String(decoding: bytes, as: UTF8.self), action)
        }
    }
}

/// What a subscriber received so far, parsed by the strict parser.
struct Received {
    var events: [ParsedEvent] = []
    var comments: [String] = []
    var last: SubscriberQueue.ReadAction?
}

extension Subscriber {
    /// Drains the queue as the content reader would and parses it.
    func received(parser: inout EventStreamParser) -> Received {
        var bytes: [UInt8] = []
        var last = read(max: 4096, write: { bytes += $0 }, onSuspend: {})
        while case .wrote = last {
            last = read(max: 4096, write: { bytes += $0 }, onSuspend: {})
        }
        let before = parser.comments.count
        let events = parser.feed(bytes)
        return Received(events: events, comments: Array(parser.comments[before...]), last: last)
    }

    func receivedEvents() -> [ParsedEvent] {
        var parser = EventStreamParser()
        return received(parser: &parser).events
    }
}

extension MemoryBroker {
    static func make(count: Int = 100, bytes: Int = 1 << 20, clock: FakeClock) -> MemoryBroker {
        MemoryBroker(limits: .init(historyCount: count, historyBytes: bytes), now: clock.now)
    }

    @discardableResult
    func publish(_ data: String, to channel: String, id: String? = nil, event: String? = nil) throws -> String {
        try publish(Event(data: data, event: event, id: id), to: ChannelName(channel))
    }
}

/// Channel names written as literals in tests (always valid ones).
extension ChannelName: ExpressibleByStringLiteral {
    public init(stringLiteral name: String) {
        try! self.init(name)
    }
}
