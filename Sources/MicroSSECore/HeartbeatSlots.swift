import Synchronization

/// The heartbeat state of every stream in one dense table, so that a heartbeat tick costs one
/// `send` per idle stream and no visit of its objects: a stream's `Subscriber` and the
/// transport's context sit between libmicrohttpd's 32 KiB buffers, one page apart, and a page not
/// touched for a heartbeat interval costs microseconds to touch again (measured on the CI's
/// virtual machines: more than the `send` itself).
///
/// A slot is half a cache line: a state word, the stream's socket (-1: not writable directly),
/// its subscriber (retained until ``release(_:)``), and room for the rest of a heartbeat chunk
/// the socket took only part of (15 bytes; a heartbeat chunk is 10). The state word says whether the stream may get a heartbeat written
/// by the ticker now (`idle`: suspended, nothing pending, nothing unsent, no flush or resume on
/// its way), whether the ticker is writing one (`busy`), and whether the stream did anything
/// since the ticker's previous pass (`active`: then it needs none). Every section under a
/// subscriber's queue lock starts with ``enter(_:activity:)``, which clears `idle` once no
/// heartbeat is being written, and ends with ``leave(_:idle:)``; the ticker writes only from
/// `idle` to `idle | busy`. So a heartbeat never interleaves with any other write to the socket:
/// every other writer (libmicrohttpd after a resume, which a queue-lock section asks for; the
/// suspended-stream writer; the content reader's direct writes) runs inside such a section.
package final class HeartbeatSlots: @unchecked Sendable {
    /// Writes one heartbeat's bytes to a socket as one chunk (the transport's direct write).
    package typealias Writer = @Sendable (_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> SuspendedWrite

    static let usedBit: UInt32 = 1
    static let idleBit: UInt32 = 2
    static let busyBit: UInt32 = 4
    static let activeBit: UInt32 = 8
    static let restBit: UInt32 = 16

    private static let slotsPerChunk = 1_024
    private static let stride = 32
    private static let restMax = 15

    private struct Registry {
        var chunks: [UnsafeMutableRawPointer] = []
        var free: [Int] = []
        var next = 0
        var count = 0
        var writer: Writer?
    }

    // Chunks are never freed before the table: the ticker reads them without the lock.
    private let registry = Mutex(Registry())

    package init() {}

    deinit {
        registry.withLock { r in
            for chunk in r.chunks {
                for i in 0..<Self.slotsPerChunk {
                    let slot = chunk + i * Self.stride
                    if let owner = slot.load(fromByteOffset: 8, as: UnsafeRawPointer?.self) {
                        Unmanaged<Subscriber>.fromOpaque(owner).release()
                    }
                }
                chunk.deallocate()
            }
        }
    }

    /// Installs the transport's direct write.
    package func setWriter(_ writer: @escaping Writer) {
        registry.withLock { $0.writer = writer }
    }

    /// Slots in use (tests).
    package var count: Int { registry.withLock { $0.count } }

    private func slot(_ index: Int, in chunks: [UnsafeMutableRawPointer]) -> UnsafeMutableRawPointer {
        chunks[index / Self.slotsPerChunk] + (index % Self.slotsPerChunk) * Self.stride
    }

    private static func state(_ slot: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt32>> {
        slot.assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// A stream's slot: its index and its address (chunks never move).
    package struct Handle: Sendable, Equatable {
        let index: Int
        let address: UInt
        var slot: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }
    }

    /// Takes a slot for `owner`'s stream on socket `fd` (-1: heartbeats go the slow way, through
    /// the subscriber). The stream counts as active: its first tick writes it no heartbeat.
    func allocate(owner: Subscriber, fd: Int32) -> Handle {
        registry.withLock { r in
            let index: Int
            if let reused = r.free.popLast() {
                index = reused
            } else {
                index = r.next
                r.next += 1
                if index >= r.chunks.count * Self.slotsPerChunk {
                    let chunk = UnsafeMutableRawPointer.allocate(
                        byteCount: Self.slotsPerChunk * Self.stride, alignment: Self.stride)
                    chunk.initializeMemory(as: UInt8.self, repeating: 0, count: Self.slotsPerChunk * Self.stride)
                    for i in 0..<Self.slotsPerChunk {
                        (chunk + i * Self.stride).bindMemory(to: Atomic<UInt32>.self, capacity: 1)
                            .initialize(to: Atomic(0))
                    }
                    r.chunks.append(chunk)
                }
            }
            r.count += 1
            let slot = slot(index, in: r.chunks)
            slot.storeBytes(of: fd, toByteOffset: 4, as: Int32.self)
            slot.storeBytes(
                of: UnsafeRawPointer(Unmanaged.passRetained(owner).toOpaque()), toByteOffset: 8,
                as: UnsafeRawPointer?.self)
            Self.state(slot).pointee.store(Self.usedBit | Self.activeBit, ordering: .releasing)
            return Handle(index: index, address: UInt(bitPattern: slot))
        }
    }

    /// Gives the slot back (the stream's connection is gone), once no heartbeat is being written.
    func release(_ handle: Handle) {
        let slot = handle.slot
        var s = Self.state(slot).pointee.load(ordering: .acquiring)
        while true {
            if s & Self.busyBit != 0 {
                s = Self.state(slot).pointee.load(ordering: .acquiring)
                continue
            }
            let (done, now) = Self.state(slot).pointee.compareExchange(
                expected: s, desired: 0, ordering: .acquiringAndReleasing)
            if done { break }
            s = now
        }
        if let owner = slot.load(fromByteOffset: 8, as: UnsafeRawPointer?.self) {
            slot.storeBytes(of: nil, toByteOffset: 8, as: UnsafeRawPointer?.self)
            Unmanaged<Subscriber>.fromOpaque(owner).release()
        }
        registry.withLock { r in
            r.free.append(handle.index)
            r.count -= 1
        }
    }

    /// Starts a section under the subscriber's queue lock: waits while a heartbeat is being
    /// written, clears `idle` (and marks the stream active when `activity`). Returns the rest of
    /// a heartbeat chunk the ticker left unsent, which the caller must send before anything else.
    func enter(_ handle: Handle, activity: Bool) -> [UInt8]? {
        let slot = handle.slot
        let state = Self.state(slot)
        var s = state.pointee.load(ordering: .acquiring)
        while true {
            if s & Self.busyBit != 0 {
                s = state.pointee.load(ordering: .acquiring)
                continue
            }
            let desired = (s & ~(Self.idleBit | Self.restBit)) | (activity ? Self.activeBit : 0)
            let (done, now) = state.pointee.compareExchange(
                expected: s, desired: desired, ordering: .acquiringAndReleasing)
            if done { break }
            s = now
        }
        guard s & Self.restBit != 0 else { return nil }
        let count = Int(slot.load(fromByteOffset: 16, as: UInt8.self))
        return Array(UnsafeRawBufferPointer(start: slot + 17, count: count))
    }

    /// Ends a section under the subscriber's queue lock: `idle` says whether the ticker may now
    /// write a heartbeat to the stream.
    func leave(_ handle: Handle, idle: Bool) {
        let state = Self.state(handle.slot)
        if idle {
            state.pointee.bitwiseOr(Self.idleBit, ordering: .releasing)
        } else {
            state.pointee.bitwiseAnd(~Self.idleBit, ordering: .releasing)
        }
    }

    /// What a pass left to the subscribers themselves.
    package enum SlowPath {
        /// Nothing could be written directly: queue the heartbeat and resume the connection.
        case queue(Subscriber)
        /// Part of the chunk was written: its rest is in the slot, for the subscriber to send.
        case rest(Subscriber)
        /// The write failed: the peer is gone.
        case failed(Subscriber)
    }

    /// The ticker's heartbeat pass: writes `heartbeat` to every idle stream that did nothing since
    /// the previous pass, and clears the others' activity. Returns what the subscribers must do.
    package func pass(heartbeat: [UInt8]) -> [SlowPath] {
        let (chunks, writer) = registry.withLock { ($0.chunks, $0.writer) }
        var slow: [SlowPath] = []
        heartbeat.withUnsafeBytes { bytes in
            for chunk in chunks {
                for i in 0..<Self.slotsPerChunk {
                    let slot = chunk + i * Self.stride
                    if let item = visit(slot, bytes, writer) { slow.append(item) }
                }
            }
        }
        return slow
    }

    private func visit(_ slot: UnsafeMutableRawPointer, _ bytes: UnsafeRawBufferPointer, _ writer: Writer?) -> SlowPath?
    {
        let state = Self.state(slot)
        let s = state.pointee.load(ordering: .acquiring)
        guard s & Self.usedBit != 0 else { return nil }
        if s & Self.activeBit != 0 {
            state.pointee.bitwiseAnd(~Self.activeBit, ordering: .relaxed)
            return nil
        }
        guard s & (Self.idleBit | Self.busyBit | Self.restBit) == Self.idleBit,
            state.pointee.compareExchange(expected: s, desired: s | Self.busyBit, ordering: .acquiring).exchanged
        else { return nil }
        // Busy: nothing else writes to the socket, and the slot is not released.
        let fd = slot.load(fromByteOffset: 4, as: Int32.self)
        let result = fd >= 0 ? writer?(fd, bytes) ?? .unavailable : .unavailable
        guard result != .written else {
            state.pointee.store(s, ordering: .releasing)
            return nil
        }
        let owner = Unmanaged<Subscriber>.fromOpaque(slot.load(fromByteOffset: 8, as: UnsafeRawPointer.self))
            .takeUnretainedValue()
        switch result {
        case .partial(let remaining) where remaining.count <= Self.restMax:
            slot.storeBytes(of: UInt8(remaining.count), toByteOffset: 16, as: UInt8.self)
            remaining.withUnsafeBytes { (slot + 17).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            state.pointee.store((s & ~Self.idleBit) | Self.restBit, ordering: .releasing)
            return .rest(owner)
        case .partial, .failed:
            state.pointee.store(s, ordering: .releasing)
            return .failed(owner)
        default:
            state.pointee.store(s, ordering: .releasing)
            return .queue(owner)
        }
    }
}
