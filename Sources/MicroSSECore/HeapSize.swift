import Dispatch
import Synchronization

// Without the module (sources compiled outside the package, as the fuzz targets are), or off
// glibc, nothing is trimmed.
#if canImport(Glibc) && canImport(CMalloc)
    import CMalloc
#endif

/// What the heap really gives the in-memory broker's history, so that the history budget
/// (``MemoryBroker/Limits/memoryBytes``) counts memory as the process pays for it: every
/// allocation as the chunk glibc's malloc carves for it (size field and rounding included),
/// every container by its capacity, not its count.
///
/// The layouts below are the Swift 6 runtime's on 64-bit Linux, measured with
/// `malloc_usable_size` (`HistoryBudgetTests` checks each charge against it on every run):
/// a class instance starts with a 16-byte header (metadata pointer, reference counts); a native
/// array's buffer adds its count and capacity (32 bytes before the elements); a native string
/// of more than 15 UTF-8 bytes (shorter ones live inside the `String` itself) is a 32-byte
/// header, the bytes and a NUL rounded up to 16, then an 8-byte breadcrumbs pointer; a
/// dictionary's storage is one allocation of a 64-byte header, a bitmap of one bit per bucket
/// (at least one word), then the keys and the values of all its buckets (a power of two, at
/// most 3/4 of them used).
///
/// glibc hands out a chunk up to 16 bytes larger than asked when the rest of the free chunk
/// it takes is too small to split off. An array's capacity says what it got (Swift sizes it
/// from the usable size); strings, dictionaries and class instances do not, so their charge
/// includes those 16 bytes.
package enum HeapSize {
    /// glibc's chunk for a request of `bytes`: the request plus an 8-byte size field, rounded
    /// up to 16, at least 32. A request of at least glibc's default mmap threshold (128 KiB) may
    /// be mapped on its own, which takes whole 4 KiB pages: charged so, whichever it got.
    package static func chunk(_ bytes: Int) -> Int {
        let heap = max(32, (bytes + 8 + 15) & ~15)
        guard bytes >= mmapThreshold else { return heap }
        return (heap + 8 + page - 1) & ~(page - 1)
    }

    /// glibc's default `M_MMAP_THRESHOLD`.
    static let mmapThreshold = 128 << 10
    static let page = 4_096

    /// A native array's buffer of `capacity` elements (nothing for an empty array, which
    /// shares one static buffer). Swift sets the capacity from the usable size it got, which
    /// may exceed the request by less than one element: charged as that much more.
    package static func array<Element>(_ a: [Element]) -> Int {
        array(capacity: a.capacity, stride: MemoryLayout<Element>.stride)
    }

    package static func array(capacity: Int, stride: Int) -> Int {
        guard capacity > 0 else { return 0 }
        let least = 32 + capacity * stride
        // The largest chunk whose usable size (8 less) still holds only `capacity` elements.
        let most = least + stride - 1
        return most >= mmapThreshold ? chunk(most) : max(chunk(least), (most + 8) & ~15)
    }

    /// A string of `utf8Count` bytes as Swift makes it from bytes (no spare capacity from
    /// appends): inline up to 15 bytes, else a 32-byte header, the bytes and a NUL rounded up
    /// to 16, and the breadcrumbs pointer.
    package static func string(utf8Count: Int) -> Int {
        utf8Count <= 15 ? 0 : chunk(((32 + utf8Count + 1 + 15) & ~15) + 8) + unsplit
    }

    package static func string(_ s: String) -> Int { string(utf8Count: s.utf8.count) }

    /// A native dictionary's storage (nothing when it never held anything).
    package static func dictionary<Key, Value>(_ d: [Key: Value]) -> Int {
        dictionary(capacity: d.capacity, keyStride: MemoryLayout<Key>.stride, valueStride: MemoryLayout<Value>.stride)
    }

    package static func dictionary(capacity: Int, keyStride: Int, valueStride: Int) -> Int {
        guard capacity > 0 else { return 0 }
        // Swift reports 3/4 of a power of two: the smallest power of two at least 4/3 of it.
        let need = max(2, (capacity * 4 + 2) / 3)
        var buckets = 1 << (Int.bitWidth - (need - 1).leadingZeroBitCount)
        while buckets * 3 / 4 < capacity { buckets *= 2 }
        let bitmap = max(1, buckets / 64) * 8
        return chunk(64 + bitmap + buckets * (keyStride + valueStride)) + unsplit
    }

    /// A ``ChannelLog`` with nothing in it: an instance of 88 bytes (header, lock, state,
    /// two atomics), a 96-byte chunk.
    package static let channelLog = 96 + unsplit

    /// What glibc may add to a chunk it does not split (see above).
    static let unsplit = 16
}

/// Gives memory the history freed back to the system. glibc keeps freed chunks for reuse and
/// returns only the top of each arena, so memory freed by eviction (a burst of forgotten
/// channels, events larger than the mmap threshold it has raised to their size) would stay in
/// the process's RSS. Once evictions have freed ``threshold`` bytes, one `malloc_trim(0)` runs
/// on a utility thread (at most one at a time, at least ``pause`` apart), which hands every
/// free page of every arena back.
package enum HeapReturn {
    /// Bytes freed that start a trim.
    package static let threshold = 4 << 20
    /// How long a trim waits after it is asked for (more frees join it).
    static let pause = DispatchTimeInterval.milliseconds(200)

    private static let freed = Atomic<Int>(0)
    private static let scheduled = Atomic<Bool>(false)
    private static let trims = Atomic<Int>(0)

    /// Trims run so far (tests).
    package static var trimCount: Int { trims.load(ordering: .relaxed) }

    /// Notes `bytes` freed (cheap: may be called under a lock).
    package static func freed(_ bytes: Int) {
        guard bytes > 0 else { return }
        guard freed.add(bytes, ordering: .relaxed).newValue >= threshold else { return }
        guard scheduled.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + pause) {
            freed.store(0, ordering: .relaxed)
            #if canImport(Glibc) && canImport(CMalloc)
                _ = malloc_trim(0)
            #endif
            trims.add(1, ordering: .relaxed)
            scheduled.store(false, ordering: .relaxed)
        }
    }
}
