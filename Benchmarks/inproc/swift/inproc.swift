// Scenario 5, Swift API: a MicroSSE server in this process, events published by Server.publish
// (no HTTP publish) as fast as a bounded window allows, to the load generator's subscribers.
//
//   inproc-swift --port P --subs N --events E [--size B] [--window W] [--channel NAME]
//
// Waits until N streams are open, publishes E events in the load generator's format
// ("<g> 0 <g> <CLOCK_MONOTONIC ns>" padded with x to B bytes, one publisher so c = 0), keeping
// at most W events per subscriber not yet handed to the sockets (Server.statistics.delivered),
// then serves until SIGINT and stops gracefully (exit 0). Built by Benchmarks/Makefile against
// the release build of the MicroSSE module.
import Dispatch
import Glibc
import MicroSSE

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The command line: `--name value` pairs, every value a number except `--channel`.
func parseOptions() -> (numbers: [String: Int], channel: String) {
    var numbers: [String: Int] = ["port": 8080, "subs": 1000, "events": 10000, "size": 64, "window": 128]
    var channel = "bench"
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let flag = arguments.next() {
        guard flag.hasPrefix("--"), let value = arguments.next() else { fatalError("usage: see the header comment") }
        let name = String(flag.dropFirst(2))
        if name == "channel" {
            channel = value
        } else if let n = Int(value), numbers[name] != nil {
            numbers[name] = n
        } else {
            fatalError("unknown or bad option \(flag) \(value)")
        }
    }
    return (numbers, channel)
}
@main
enum InprocSwift {
    static func main() async throws {
        let (options, channel) = parseOptions()
        let subs = options["subs"]!, events = options["events"]!, size = options["size"]!
        let window = options["window"]!
        var config = ServerConfiguration()
        config.port = UInt16(options["port"]!)
        config.heartbeatSeconds = 0
        config.maxClients = max(subs + 100, 20_000)
        config.connectionLimit = config.maxClients + 240
        let server = Server(configuration: config)
        let stopSignal = stopOnSIGINT(server)
        try server.start()
        print("inproc-swift on http://127.0.0.1:\(server.port)/events/\(channel)")
        fflush(nil)
        Thread {
            while server.statistics.clients < subs { usleep(1_000) }
            for g in 0..<events {
                while g - server.statistics.delivered / subs >= window { usleep(50) }
                var data = "\(g) 0 \(g) \(monotonicNanoseconds()) "
                if data.utf8.count < size { data += String(repeating: "x", count: size - data.utf8.count) }
                do { _ = try server.publish(data, to: channel) } catch { fatalError("publish: \(error)") }
            }
        }.start()
        await server.waitUntilStopped()
        stopSignal.cancel()
    }
}

/// Stops the server on SIGINT. Nonisolated, so the handler does not inherit the main actor.
func stopOnSIGINT(_ server: Server) -> any DispatchSourceSignal {
    signal(SIGINT, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    source.setEventHandler { server.stop() }
    source.resume()
    return source
}

/// A plain thread for the publisher loop (no Foundation).
final class Thread: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var id = pthread_t()
        pthread_create(&id, nil, { raw in
            let t = Unmanaged<Thread>.fromOpaque(raw!).takeRetainedValue()
            t.body()
            return nil
        }, box)
        pthread_detach(id)
    }
}
