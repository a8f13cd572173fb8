import MicroSSECore
import Synchronization

@testable import MicroSSETransport

/// The stand-ins for the transport's stream objects that ``HeartbeatSlotsTests`` attaches.
extension HeartbeatSlotsTests {
    /// What reached the sockets, in order.
    final class Wire: Sendable {
        let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    /// A stream's connection holding a slot of the table as the transport's ``StreamSocket``
    /// does (its section hooks, the rest of a chunk), without a socket: the socket is a number.
    class SlotConnection: StreamConnection, @unchecked Sendable {
        // @unchecked Sendable: `slot` and `subscriber` are set once by `bind`, before any
        // section; `unsent` is guarded by the subscriber's queue lock, as in StreamSocket.
        let slots: HeartbeatSlots
        var slot: HeartbeatSlots.Slot?
        var subscriber: Subscriber?
        var unsent: [UInt8] = []
        init(_ slots: HeartbeatSlots) { self.slots = slots }

        /// Takes a slot for `sub` (socket 7 when writable directly, else -1) and attaches.
        func bind(_ sub: Subscriber) {
            slot = slots.allocate(owner: sub, fd: writesWhileSuspended ? 7 : -1)
            subscriber = sub
            sub.attach(self)
        }

        /// The free callback: detaches the subscriber, then gives the slot back.
        func close() {
            subscriber?.detach()
            if let slot { slots.release(slot) }
        }

        var writesWhileSuspended: Bool { false }
        func resume() {}
        func cut() {}
        func scheduleFlush() {}
        func enterSection() -> Int {
            guard let slot, let rest = slots.enter(slot) else { return 0 }
            unsent = rest
            return rest.count
        }
        func leaveSection(idle: Bool, active: Bool) {
            if let slot { slots.leave(slot, idle: idle, active: active) }
        }
        func writeWhileSuspended(_ bytes: UnsafeRawBufferPointer, events: Int) -> SuspendedWrite { .unavailable }
        func writeWhileSuspended(parts: UnsafeBufferPointer<UnsafeRawBufferPointer>, events: Int) -> SuspendedWrite {
            let joined = parts.flatMap { Array($0) }
            return joined.withUnsafeBytes { writeWhileSuspended($0, events: events) }
        }
        func writeUnsent() -> Int {
            unsent = []
            return 0
        }
    }

    /// A connection whose direct writes are recorded with the table's.
    final class Connection: SlotConnection, @unchecked Sendable {
        let wire: Wire
        let resumes = Atomic<Int>(0)
        init(_ wire: Wire, _ slots: HeartbeatSlots) {
            self.wire = wire
            super.init(slots)
        }
        override var writesWhileSuspended: Bool { true }
        override func resume() { resumes.add(1, ordering: .relaxed) }
        override func writeWhileSuspended(_ bytes: UnsafeRawBufferPointer, events: Int) -> SuspendedWrite {
            wire.append(String(decoding: bytes, as: UTF8.self))
            return .written
        }
        override func writeUnsent() -> Int {
            wire.append("rest:" + String(decoding: unsent, as: UTF8.self))
            unsent = []
            return 0
        }
    }

    /// Reads through the real reader into a buffer of `max` bytes.
    static func read(_ sub: Subscriber, max: Int = 64, into taken: inout [UInt8]) -> SubscriberQueue.ReadAction {
        var buffer = [UInt8](repeating: 0, count: max)
        let action = buffer.withUnsafeMutableBytes { sub.read(into: $0, onSuspend: {}) }
        if case .wrote(let n, _) = action { taken += buffer[..<n] }
        return action
    }

    static func read(_ sub: Subscriber, max: Int = 64) -> SubscriberQueue.ReadAction {
        var ignored: [UInt8] = []
        return read(sub, max: max, into: &ignored)
    }
}
