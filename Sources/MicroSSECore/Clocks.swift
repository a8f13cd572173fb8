import MicroSSEWire

#if canImport(Glibc)
    import Glibc
#endif

/// The clocks every layer uses (one place, so the broker, the transport and Redis agree).
package enum Clocks {
    /// Monotonic milliseconds, for deadlines.
    package static func monotonicMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    /// Wall-clock microseconds since the epoch (server-assigned ids).
    package static func wallMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1_000
    }

    /// Wall-clock milliseconds since the epoch (Redis stream ids).
    package static func wallMilliseconds() -> UInt64 { wallMicroseconds() / 1_000 }

    /// Sleeps the calling thread.
    package static func sleep(milliseconds: Int) {
        let ms = max(0, milliseconds)
        var request = timespec(tv_sec: ms / 1_000, tv_nsec: ms % 1_000 * 1_000_000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}
