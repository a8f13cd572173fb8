internal import CMHDShim
import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// Where a stop may wait, and a thread of its own for one that may not (docs/DESIGN.md, shutdown).
///
/// A graceful stop blocks: it waits for the streams to end (up to the drain timeout), then joins
/// libmicrohttpd's threads. Two kinds of thread must never do that: libmicrohttpd's own polling
/// threads (a handler, the authorizer or a connect/disconnect callback calling stop: the join of
/// the calling thread aborts the process), and Swift concurrency's cooperative threads (a
/// cancelled `run()`: the pool has one thread per core). Both hand the stop to
/// ``StopThread/detach(_:)``.
package enum StopThread {
    /// Whether the calling thread is one of libmicrohttpd's polling threads, of any server in this
    /// process (marked by the first callback each connection and request gets on it).
    package static var isDaemonThread: Bool { msse_shim_on_daemon_thread() != 0 }

    /// An identifier of the calling thread, unique among the threads alive.
    package static var current: UInt { UInt(bitPattern: Int(bitPattern: pthread_self())) }

    /// Runs `body` on a new detached thread (or, when the system refuses one, on a Dispatch
    /// worker: never on the calling thread) and returns at once.
    package static func detach(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Body(body))
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        if pthread_create(&thread, &attributes, stopThreadMain, box.toOpaque()) != 0 {
            box.release()
            DispatchQueue.global().async(execute: body)
        }
    }

    fileprivate final class Body: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}

private func stopThreadMain(_ argument: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let argument else { return nil }
    Unmanaged<StopThread.Body>.fromOpaque(argument).takeRetainedValue().run()
    return nil
}
