// Runs the real `microsse` executable for end-to-end tests.
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The package root, found from this file's path.
public let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The `microsse` executable next to the test bundle (the same build configuration).
public func microsseExecutable() -> String {
    let candidates = [
        Bundle.main.bundleURL.appendingPathComponent("microsse").path,
        Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("microsse").path,
        packageRoot + "/.build/debug/microsse",
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
}

/// Runs the real `microsse` with `arguments` to its exit; returns its status and stderr.
public func runToExit(_ arguments: [String], timeout: Double = 10) throws -> (status: Int32, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: microsseExecutable())
    p.arguments = arguments
    let errors = Pipe()
    p.standardOutput = FileHandle.nullDevice
    p.standardError = errors
    try p.run()
    let deadline = now() + timeout
    while p.isRunning && now() < deadline { usleep(20_000) }
    if p.isRunning {
        p.terminate()
        throw TestClientError("microsse \(arguments) did not exit")
    }
    let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return (p.terminationStatus, text)
}

/// A `microsse` process started with `--port 0`; its port is read from the URL it prints.
public final class ServerProcess {
    public let process = Process()
    public private(set) var port: UInt16 = 0
    private let output = Pipe()
    private let errors = Pipe()
    private let lines = LockedLines()

    /// Starts `microsse ARGUMENTS...` and waits until it prints its URL.
    public init(_ arguments: [String], timeout: Double = 10) throws {
        process.executableURL = URL(fileURLWithPath: microsseExecutable())
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = errors
        let lines = self.lines
        output.fileHandleForReading.readabilityHandler = { handle in
            lines.append(String(decoding: handle.availableData, as: UTF8.self))
        }
        errors.fileHandleForReading.readabilityHandler = { handle in
            lines.appendError(String(decoding: handle.availableData, as: UTF8.self))
        }
        try process.run()
        var found: UInt16?
        eventually(timeout: timeout) {
            found = lines.port()
            return found != nil || !process.isRunning
        }
        guard let found else {
            process.terminate()
            throw TestClientError("microsse printed no URL; stderr: \(lines.errors)")
        }
        port = found
    }

    /// Everything printed so far on stdout and stderr.
    public var stdout: String { lines.text }
    public var stderr: String { lines.errors }

    /// Sends a signal (SIGINT, SIGTERM, SIGKILL).
    public func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for exit; returns the exit status, or nil if still running after `timeout`.
    public func waitForExit(timeout: Double = 10) -> Int32? {
        guard eventually(timeout: timeout, { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        output.fileHandleForReading.readabilityHandler = nil
        errors.fileHandleForReading.readabilityHandler = nil
    }
}

private final class LockedLines: @unchecked Sendable {
    // Guarded by `lock`; written by the pipe's handler thread, read by the test.
    private let lock = NSLock()
    private var out = ""
    private var err = ""

    func append(_ s: String) { lock.withLock { out += s } }
    func appendError(_ s: String) { lock.withLock { err += s } }
    var text: String { lock.withLock { out } }
    var errors: String { lock.withLock { err } }

    /// The port of the first `http(s)://host:PORT` printed.
    func port() -> UInt16? {
        let text = self.text
        guard let range = text.range(of: "://") else { return nil }
        let rest = text[range.upperBound...]
        guard let colon = rest.lastIndex(of: ":", before: rest.firstIndex(of: "/") ?? rest.endIndex) else {
            return nil
        }
        let digits = rest[rest.index(after: colon)...].prefix { $0.isNumber }
        return UInt16(digits)
    }
}

extension Substring {
    fileprivate func lastIndex(of c: Character, before end: Index) -> Index? {
        self[startIndex..<end].lastIndex(of: c)
    }
}
