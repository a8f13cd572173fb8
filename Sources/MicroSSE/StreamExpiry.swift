import Dispatch
import MicroSSECore
import MicroSSEWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Ends streams whose token expires: at the token's exact `exp` (no leeway), the stream gets a
/// final event `microsse.expired` with data `{"exp": N}` and then ends cleanly.
///
/// One Dispatch timer serves every stream: a min-heap of (exp, client) holds the deadlines and
/// the timer is armed for the earliest one. Clients are held weakly, so a stream that closed
/// early costs a few bytes until its deadline or the next compaction.
///
/// `@unchecked Sendable`: the timer is set once in `init` (a Dispatch source may be rescheduled
/// and cancelled from any thread); everything else is behind the mutex.
final class StreamExpiry: @unchecked Sendable {
    /// The event type of the final event.
    static let eventType = ControlEvents.expiredName

    private struct Entry {
        let exp: Int
        weak var client: Client?
    }

    private struct State {
        var heap: [Entry] = []
        /// The deadline the timer is armed for, if any.
        var armed: Int?
        /// Heap size after the last compaction (dropping entries of closed clients).
        var compactedCount = 0
    }

    private let state = Mutex(State())
    private let timer: DispatchSourceTimer

    init() {
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "microsse.stream-expiry"))
        timer.schedule(wallDeadline: .distantFuture)
        timer.setEventHandler { [weak self] in self?.fire() }
        timer.resume()
    }

    deinit {
        timer.cancel()
    }

    /// Ends `client`'s stream at `exp` (seconds since the epoch).
    func watch(_ client: Client, exp: Int) {
        // The timer is (re)armed under the lock, so a concurrent fire() cannot arm it later.
        state.withLock { s in
            if s.heap.count > 2 * s.compactedCount + 1024 { Self.compact(&s) }
            Self.push(Entry(exp: exp, client: client), &s.heap)
            guard s.armed.map({ exp < $0 }) ?? true else { return }
            s.armed = exp
            arm(exp)
        }
    }

    /// Streams being watched (closed ones included until their deadline or a compaction).
    var count: Int { state.withLock { $0.heap.count } }

    private func arm(_ exp: Int) {
        timer.schedule(
            wallDeadline: DispatchWallTime(timespec: timespec(tv_sec: exp, tv_nsec: 0)), leeway: .milliseconds(5))
    }

    private func fire() {
        let now = Int(Clocks.wallMicroseconds() / 1_000_000)
        var due: [(Int, Client)] = []
        state.withLock { s in
            while let first = s.heap.first, first.exp <= now {
                let entry = Self.pop(&s.heap)
                if let client = entry.client { due.append((entry.exp, client)) }
            }
            s.armed = s.heap.first?.exp
            if let next = s.armed { arm(next) }
        }
        for (exp, client) in due where client.isOpen {
            if let event = try? Event(data: "{\"exp\": \(exp)}", event: Self.eventType) {
                _ = client.sendControl(event)
            }
            client.close()
        }
    }

    // MARK: Min-heap by exp

    private static func push(_ entry: Entry, _ heap: inout [Entry]) {
        heap.append(entry)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].exp < heap[parent].exp else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private static func pop(_ heap: inout [Entry]) -> Entry {
        let top = heap[0]
        let last = heap.removeLast()
        guard !heap.isEmpty else { return top }
        heap[0] = last
        siftDown(0, &heap)
        return top
    }

    private static func siftDown(_ start: Int, _ heap: inout [Entry]) {
        var i = start
        while true {
            let l = 2 * i + 1
            let r = l + 1
            var m = i
            if l < heap.count, heap[l].exp < heap[m].exp { m = l }
            if r < heap.count, heap[r].exp < heap[m].exp { m = r }
            guard m != i else { return }
            heap.swapAt(i, m)
            i = m
        }
    }

    /// Drops the entries of closed streams and restores the heap order.
    private static func compact(_ s: inout State) {
        s.heap.removeAll { $0.client?.isOpen != true }
        if s.heap.count > 1 {
            for i in stride(from: s.heap.count / 2 - 1, through: 0, by: -1) { siftDown(i, &s.heap) }
        }
        s.compactedCount = s.heap.count
    }
}
