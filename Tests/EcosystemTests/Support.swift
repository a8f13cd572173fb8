import Foundation
import MicroSSETestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// An executable of this package next to the test bundle (the same build configuration).
func executable(_ name: String) -> String {
    let candidates = [
        Bundle.main.bundleURL.appendingPathComponent(name).path,
        Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent(name).path,
        packageRoot + "/.build/debug/\(name)",
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
}

/// A process of this package with its own arguments and environment; stdout and stderr are
/// collected. Stopped with SIGKILL if still running when released.
final class Launched {
    let process = Process()
    // Two pipes, never one for both: Process.run closes the write end of each pipe it is given,
    // and the same pipe twice would close its descriptor twice, the second time whatever
    // descriptor of this process (a server's socket) has reused the number.
    private let output = Pipe()
    private let errors = Pipe()
    private let collected = Collected()

    init(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable(name))
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MICROSSE_") }
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = output
        process.standardError = errors
        let collected = self.collected
        for pipe in [output, errors] {
            pipe.fileHandleForReading.readabilityHandler = { handle in
                collected.append(String(decoding: handle.availableData, as: UTF8.self))
            }
        }
        try process.run()
    }

    /// Everything printed so far, stdout and stderr together.
    var text: String { collected.text }
    var pid: Int32 { process.processIdentifier }

    /// Sends `sig` to the process.
    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// The exit status, or nil if still running after `timeout`.
    func waitForExit(timeout: Double = 10) -> Int32? {
        guard eventually(timeout: timeout, { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        output.fileHandleForReading.readabilityHandler = nil
        errors.fileHandleForReading.readabilityHandler = nil
    }
}

private final class Collected: @unchecked Sendable {
    // Guarded by `lock`: written by the pipe's handler thread, read by the test.
    private let lock = NSLock()
    private var buffer = ""

    func append(_ s: String) { lock.withLock { buffer += s } }
    var text: String { lock.withLock { buffer } }
}

/// Waits until `GET /healthz` on `port` answers 200.
func waitUntilServing(_ port: UInt16, timeout: Double = 10) -> Bool {
    eventually(timeout: timeout) { (try? httpRequest(port: port, path: "/healthz", timeout: 1))?.status == 200 }
}

/// The value of the sample `series` (a name with its labels, e.g. `x_total{reason="a"}`) in
/// Prometheus text.
func sample(_ series: String, in text: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}
