import MicroSSECore

/// The release pass's bookkeeping of one stream's write region: the buffer libmicrohttpd last
/// handed its content reader, whose whole pages the peer watcher gives back to the kernel
/// (`madvise(MADV_DONTNEED)`) once the stream has stayed suspended for a pass interval. Pure
/// state, guarded by the subscriber's queue lock (see ``IdleRegionOwner``).
struct IdleRelease: Equatable {
    /// The region the reader was last handed.
    var address: UInt = 0
    var count = 0
    /// The pages last given back, while no write may have touched them since (a heartbeat or a
    /// small event writes only the region's first, partial page): releasing them again is skipped.
    var untouched: Pages?
    /// The current suspension was seen by one pass (`seen`); its region was given back (`released`).
    var seen = false
    var released = false
    /// In the watcher's list of streams to visit.
    var listed = false

    struct Pages: Equatable {
        var address: UInt
        var count: Int
    }

    /// What ``suspended()`` asks for.
    enum Listing: Equatable {
        case none
        /// List the stream for the next pass.
        case list
        /// Not listed (its pages given back are untouched): the queue drops its spare capacity now.
        case dropSpare
    }

    /// What a pass does with a stream it visits.
    enum Visit: Equatable {
        /// Not suspended, or already given back: drop it from the list (its next suspend lists it again).
        case drop
        /// Suspended since before this visit: keep it listed and visit it again next pass.
        case keep
        /// Suspended since the previous visit: give back the region's whole pages.
        case release(address: UInt, count: Int)
    }

    /// The reader was handed the region at `address` of `count` bytes and wrote `written` of it.
    mutating func read(address: UInt, count: Int, written: Int) {
        if untouched != nil && (address != self.address || count != self.count) { untouched = nil }
        self.address = address
        self.count = count
        // libmicrohttpd appends the chunk's CRLF after the data: count a few bytes more.
        if let pages = untouched, written > 0, address &+ UInt(written + 16) > pages.address { untouched = nil }
    }

    /// The reader suspended the connection: a new suspension starts. Lists the stream once until
    /// a pass drops it, so a busy stream is listed at most once per pass, and an idle stream
    /// whose region was given back costs the pass nothing; a stream whose pages given back are
    /// still untouched is not listed at all (a pass would find nothing to give back).
    mutating func suspended() -> Listing {
        seen = false
        released = false
        guard !listed else { return .none }
        if untouched != nil {
            released = true
            return .dropSpare
        }
        listed = true
        return .list
    }

    /// A pass's visit; `waiting` is the queue's (suspended, no resume asked for). The first
    /// visit during a suspension only marks it; the next gives the region back, so it has stayed
    /// suspended for at least the pass interval.
    mutating func visit(waiting: Bool) -> Visit {
        guard waiting, !released, address != 0, count > 0 else {
            listed = false
            return .drop
        }
        guard seen else {
            seen = true
            return .keep
        }
        released = true
        listed = false
        return .release(address: address, count: count)
    }

    /// The page-aligned interior of `[address, address + count)`, or nil when it holds no whole page.
    static func wholePages(address: UInt, count: Int, pageSize: Int) -> Pages? {
        guard pageSize > 0, count > 0 else { return nil }
        let page = UInt(pageSize)
        let (end, overflow) = address.addingReportingOverflow(UInt(count))
        guard !overflow, address <= UInt.max - (page - 1) else { return nil }
        let first = (address + page - 1) / page * page
        let last = end / page * page
        guard last > first else { return nil }
        return Pages(address: first, count: Int(last - first))
    }
}

/// A stream whose write region the release pass may give back: the ``StreamSocket`` (tests make
/// their own). `idle` is guarded by the subscriber's queue lock: it is touched only inside the
/// subscriber's sections.
protocol IdleRegionOwner: AnyObject {
    var subscriber: Subscriber { get }
    var idle: IdleRelease { get set }
}

extension IdleRegionOwner {
    /// The content reader's read: fills at most `filling` bytes of `buffer` (a replaying
    /// stream's share of a turn; the whole `buffer` stays the region the pass gives back),
    /// big log frames going to the socket directly up to about `directBudget` bytes. Under the
    /// subscriber's lock: `onSuspend` when the answer is `.suspend`, then `onListing` when the
    /// stream must join the release pass's list.
    func read(
        into buffer: UnsafeMutableRawBufferPointer, filling: Int = .max, directBudget: Int,
        onSuspend: () -> Void, onListing: () -> Void
    ) -> SubscriberQueue.ReadAction {
        let out = filling < buffer.count ? UnsafeMutableRawBufferPointer(rebasing: buffer[..<filling]) : buffer
        return subscriber.read(into: out, directBudget: directBudget) { q, action in
            let written: Int
            if case .wrote(let bytes, _) = action { written = bytes } else { written = 0 }
            idle.read(address: UInt(bitPattern: buffer.baseAddress), count: buffer.count, written: written)
            guard action == .suspend else { return }
            onSuspend()
            switch idle.suspended() {
            case .none: break
            case .list: onListing()
            case .dropSpare: q.dropSpareCapacity()
            }
        }
    }

    /// A release pass's visit: gives back the whole pages of the region the reader was last
    /// handed when the connection has stayed suspended since the previous visit. `release` runs
    /// under the subscriber's lock, so no reader and no resume can touch the region meanwhile
    /// (while the queue is waiting, no reader runs and no resume has been asked for; a closed
    /// stream is never waiting); the pages read as zeros when next touched. Returns the bytes
    /// given back and whether to visit the stream again.
    func visitIdle(pageSize: Int, _ release: (_ address: UInt, _ count: Int) -> Void) -> (released: Int, keep: Bool) {
        subscriber.withQueue { q in
            switch idle.visit(waiting: q.waiting) {
            case .drop: return (0, false)
            case .keep: return (0, true)
            case .release(let address, let count):
                // Nothing is queued while waiting: drop the frame array's spare capacity too.
                q.dropSpareCapacity()
                guard let pages = IdleRelease.wholePages(address: address, count: count, pageSize: pageSize),
                    pages.address != 0
                else { return (0, false) }
                assert(
                    pages.address >= address && pages.address + UInt(pages.count) <= address + UInt(count),
                    "released range outside the reader's buffer")
                // Already given back and not written since: nothing to do (no system call).
                if idle.untouched == pages { return (0, false) }
                release(pages.address, pages.count)
                idle.untouched = pages
                return (pages.count, false)
            }
        }
    }
}
