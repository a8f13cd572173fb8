import MicroSSECore
import MicroSSEWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The heartbeat state of every stream in one dense table, so that a heartbeat pass costs one
/// `send` per idle stream and no visit of its objects: a stream's `Subscriber` and the
/// transport's context sit between libmicrohttpd's 32 KiB buffers, a page or two apart, and a
/// page not touched for a heartbeat interval costs microseconds to touch again (measured on the
/// CI's virtual machines: more than the `send` itself). Slots are made 1,024 at a time, so they
/// lie together in memory.
///
/// A slot holds a state word, the stream's socket (-1: not writable directly), its subscriber
/// (held until ``release(_:)``), and the rest of a heartbeat chunk the socket took only part
/// of. The stream's ``StreamSocket`` owns the slot: its section hooks
/// (``StreamConnection/enterSection()``, ``StreamConnection/leaveSection(idle:active:)``) call
/// ``enter(_:)`` and ``leave(_:idle:active:)``. The state word says whether the ticker may write a heartbeat to the stream now (`idle`:
/// suspended, nothing pending or unsent, no flush or resume on its way), whether the ticker is at
/// the slot (`busy`), and whether the stream did anything since the ticker's previous pass
/// (`active`: then it needs no heartbeat). Every section under a subscriber's queue lock starts
/// with ``enter(_:)``, which waits while `busy` is set and clears `idle`, and ends with
/// ``leave(_:idle:active:)``; the ticker writes only after taking `idle` to `idle | busy`. So a
/// heartbeat never interleaves with another write to the socket: every other writer
/// (libmicrohttpd after a resume, which a section asks for; the suspended-stream writer; the
/// content reader's direct writes) runs inside such a section or after one that cleared `idle`.
/// While `busy` the ticker takes no lock and only `send`s, so a wait for it is short.
package final class HeartbeatSlots: Sendable {
    // Raw memory, not objects: Swift lays out no array of atomics, and slot objects made one by
    // one land wherever the allocator has room, a page apart again (measured: 0.40% of a core
    // for the pass over raw blocks, 0.60% over slot objects).
    /// Writes one heartbeat's bytes to a socket as one chunk (the transport's direct write).
    package typealias Writer = @Sendable (_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> ChunkWrite

    /// A stream's slot: its address in a block (blocks never move or go before the table).
    package struct Slot: Sendable, Equatable {
        // A non-null pointer: `Slot?` needs no tag byte of its own (it sits in every stream's
        // queue). Sendable: the slot's words are only used through its atomic state protocol.
        nonisolated(unsafe) let raw: UnsafeMutableRawPointer
        init(_ raw: UnsafeMutableRawPointer) { self.raw = raw }
        var state: UnsafeMutablePointer<Atomic<UInt32>> { raw.assumingMemoryBound(to: Atomic<UInt32>.self) }
        /// Written before the state word makes the slot used, read by the ticker under `busy`.
        var fd: Int32 {
            get { raw.load(fromByteOffset: 4, as: Int32.self) }
            nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 4, as: Int32.self) }
        }
        /// The subscriber, retained while the slot is used.
        var owner: UnsafeRawPointer? {
            get { raw.load(fromByteOffset: 8, as: UnsafeRawPointer?.self) }
            nonmutating set { raw.storeBytes(of: newValue, toByteOffset: 8, as: UnsafeRawPointer?.self) }
        }
        /// The rest of a heartbeat chunk: written by the ticker under `busy`, read by ``enter(_:)``.
        var rest: [UInt8] {
            get {
                Array(UnsafeRawBufferPointer(start: raw + 17, count: Int(raw.load(fromByteOffset: 16, as: UInt8.self))))
            }
            nonmutating set {
                let count = Swift.min(newValue.count, 15)
                raw.storeBytes(of: UInt8(count), toByteOffset: 16, as: UInt8.self)
                newValue.withUnsafeBytes { (raw + 17).copyMemory(from: $0.baseAddress!, byteCount: count) }
            }
        }
    }

    static let usedBit: UInt32 = 1
    static let idleBit: UInt32 = 2
    static let busyBit: UInt32 = 4
    static let activeBit: UInt32 = 8
    static let restBit: UInt32 = 16

    private static let slotsPerBlock = 1_024
    /// A slot's bytes: the state word, the socket, the subscriber, and 16 bytes for the rest of a
    /// heartbeat chunk (its count and up to 15 bytes; a heartbeat chunk is 8).
    private static let stride = 32

    private struct Registry {
        var blocks: [UnsafeMutableRawPointer] = []
        var free: [Slot] = []
        var count = 0
        var writer: Writer?
    }

    private let registry = Mutex(Registry())

    package init() {}

    deinit {
        registry.withLock { r in
            for block in r.blocks {
                for i in 0..<Self.slotsPerBlock {
                    let slot = Slot(block + i * Self.stride)
                    if let owner = slot.owner { Unmanaged<Subscriber>.fromOpaque(owner).release() }
                }
                block.deallocate()
            }
        }
    }

    /// Installs the transport's direct write.
    package func setWriter(_ writer: @escaping Writer) {
        registry.withLock { $0.writer = writer }
    }

    /// Slots in use (tests).
    package var count: Int { registry.withLock { $0.count } }

    /// Takes a slot for `owner`'s stream on socket `fd` (-1: its heartbeats go through the
    /// subscriber). The stream counts as active: its first pass writes it no heartbeat.
    func allocate(owner: Subscriber, fd: Int32) -> Slot {
        let slot = registry.withLock { r in
            if r.free.isEmpty {
                // A block of slots, together in memory: the pass reads them in order.
                let block = UnsafeMutableRawPointer.allocate(
                    byteCount: Self.slotsPerBlock * Self.stride, alignment: Self.stride)
                block.initializeMemory(as: UInt8.self, repeating: 0, count: Self.slotsPerBlock * Self.stride)
                for i in 0..<Self.slotsPerBlock {
                    (block + i * Self.stride).bindMemory(to: Atomic<UInt32>.self, capacity: 1).initialize(to: Atomic(0))
                }
                r.blocks.append(block)
                r.free = (0..<Self.slotsPerBlock).reversed().map {
                    Slot(block + $0 * Self.stride)
                }
            }
            r.count += 1
            return r.free.removeLast()
        }
        slot.fd = fd
        slot.owner = UnsafeRawPointer(Unmanaged.passRetained(owner).toOpaque())
        slot.state.pointee.store(Self.usedBit | Self.activeBit, ordering: .releasing)
        return slot
    }

    /// Gives the slot back (the stream's connection is gone, its socket not yet closed), once the
    /// ticker is not at it: no heartbeat is written to the socket after this returns.
    func release(_ slot: Slot) {
        Self.update(slot) { _ in 0 }
        if let owner = slot.owner {
            slot.owner = nil
            Unmanaged<Subscriber>.fromOpaque(owner).release()
        }
        registry.withLock { r in
            r.free.append(slot)
            r.count -= 1
        }
    }

    /// Starts a section under the owner's queue lock: waits while the ticker is at the slot, then
    /// clears `idle`. Returns the rest of a heartbeat chunk the ticker left unsent, which the
    /// caller must send before anything else.
    func enter(_ slot: Slot) -> [UInt8]? {
        let s = Self.update(slot) { $0 & ~(Self.idleBit | Self.restBit) }
        guard s & Self.restBit != 0 else { return nil }
        return slot.rest
    }

    /// Ends a section under the owner's queue lock: `idle` says whether the ticker may now write a
    /// heartbeat to the stream, `active` whether the section was the stream's activity (events
    /// written or queued: the next pass then writes none).
    func leave(_ slot: Slot, idle: Bool, active: Bool) {
        let set = (idle ? Self.idleBit : 0) | (active ? Self.activeBit : 0)
        if set != 0 { slot.state.pointee.bitwiseOr(set, ordering: .releasing) }
    }

    /// Once the ticker is not at the slot, changes its state word with `change`; returns the word
    /// it changed.
    @discardableResult
    private static func update(_ slot: Slot, _ change: (UInt32) -> UInt32) -> UInt32 {
        var s = slot.state.pointee.load(ordering: .acquiring)
        var spins = 0
        while true {
            if s & busyBit != 0 {
                pause(&spins)
                s = slot.state.pointee.load(ordering: .acquiring)
                continue
            }
            let (done, now) = slot.state.pointee.compareExchange(
                expected: s, desired: change(s), ordering: .acquiringAndReleasing)
            if done { return s }
            s = now
        }
    }

    /// A wait for the ticker: it only `send`s while at a slot, but its thread may be preempted.
    private static func pause(_ spins: inout Int) {
        spins += 1
        if spins > 64 { sched_yield() }
    }

    /// The ticker's heartbeat pass (every `heartbeatSeconds`): the table writes `frame` to every
    /// idle stream's socket without visiting the stream; the streams it could not write to get
    /// it queued, and their connections are resumed back to back, so libmicrohttpd's polling
    /// thread finds them together (each turn of its loop walks the whole suspended list once,
    /// however many were resumed). Returns how many streams were visited.
    @discardableResult
    package func heartbeat(_ frame: Frame) -> Int {
        let visiting = pass(heartbeat: frame.bytes)
        var toWake: [Subscriber] = []
        for item in visiting {
            switch item {
            case .queue(let sub):
                // Not writable directly (or the socket was full): queued, and resumed.
                if sub.queueHeartbeat(frame).needsWake { toWake.append(sub) }
            case .rest(let sub):
                // Cut short: the stream's next section takes the rest; send it now.
                if sub.writeUnsent() { sub.scheduleFlush() }
            case .failed(let sub):
                sub.fail()
            }
        }
        for sub in toWake { sub.wake() }
        return visiting.count
    }

    /// What a pass left to the subscribers themselves.
    package enum SlowPath {
        /// Quiet for a whole interval but not writable from the table (not suspended, or its
        /// socket not writable directly or full): `Subscriber.queueHeartbeat` queues one.
        case queue(Subscriber)
        /// Part of the chunk was written: its rest is in the slot, for the subscriber to send.
        case rest(Subscriber)
        /// The write failed: the peer is gone.
        case failed(Subscriber)
    }

    /// The ticker's heartbeat pass: writes `heartbeat` to every idle stream that did nothing
    /// since the previous pass, and clears the others' activity. Returns what the subscribers
    /// must do themselves.
    package func pass(heartbeat: [UInt8]) -> [SlowPath] {
        let (blocks, writer) = registry.withLock { ($0.blocks, $0.writer) }
        var slow: [SlowPath] = []
        heartbeat.withUnsafeBytes { bytes in
            for block in blocks {
                for i in 0..<Self.slotsPerBlock {
                    let slot = Slot(block + i * Self.stride)
                    if let item = visit(slot, bytes, writer) { slow.append(item) }
                }
            }
        }
        return slow
    }

    private func visit(_ slot: Slot, _ bytes: UnsafeRawBufferPointer, _ writer: Writer?) -> SlowPath? {
        let s = slot.state.pointee.load(ordering: .acquiring)
        guard s & Self.usedBit != 0 else { return nil }
        if s & Self.activeBit != 0 {
            slot.state.pointee.bitwiseAnd(~Self.activeBit, ordering: .relaxed)
            return nil
        }
        guard s & (Self.busyBit | Self.restBit) == 0,
            slot.state.pointee.compareExchange(expected: s, desired: s | Self.busyBit, ordering: .acquiring).exchanged
        else { return nil }
        // At the slot: no section of the owner runs, and the slot is not given back.
        var result = ChunkWrite.unavailable
        if s & Self.idleBit != 0 && slot.fd >= 0, let writer {
            result = writer(slot.fd, bytes)
        }
        if result == .written {
            slot.state.pointee.store(s, ordering: .releasing)
            return nil
        }
        // Held for the subscriber's own work, from before the slot is let go.
        let owner = Unmanaged<Subscriber>.fromOpaque(slot.owner!).retain().takeRetainedValue()
        var state = s
        let item: SlowPath
        switch result {
        case .partial(let remaining) where remaining.count <= 15:
            slot.rest = remaining
            state = (s & ~Self.idleBit) | Self.restBit
            item = .rest(owner)
        case .partial, .failed:
            item = .failed(owner)
        case .written, .unavailable:  // written: returned above
            item = .queue(owner)
        }
        slot.state.pointee.store(state, ordering: .releasing)
        return item
    }
}
