// Helpers for the C ABI tests: where the package and the built library are, running tools, and
// compiling C programs against include/microsse.h and libmicrosse.
import Foundation
import MicroSSETestSupport

/// The package root, from this file's path (Tests/CABITests/Toolchain.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The directory holding `libMicroSSEC.so`: next to the test bundle, else `.build/debug`.
let buildDirectory: URL = {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
        packageRoot.appendingPathComponent(".build/debug"),
    ]
    return candidates.first {
        FileManager.default.fileExists(atPath: $0.appendingPathComponent("libMicroSSEC.so").path)
    }
        ?? candidates[1]
}()

/// The dynamic C library SwiftPM built (its soname is `libmicrosse.so.0`).
var libraryPath: String { buildDirectory.appendingPathComponent("libMicroSSEC.so").path }

/// A fresh temporary directory.
func temporaryDirectory(_ name: String) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("microsse-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// What a finished tool printed.
struct ToolResult {
    var status: Int32
    var out: String
    var err: String
}

/// Runs `tool` (found on PATH) to completion; output goes through files so nothing can block.
@discardableResult
func run(_ tool: String, _ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:])
    throws -> ToolResult
{
    let dir = try temporaryDirectory("run")
    defer { try? FileManager.default.removeItem(at: dir) }
    let outURL = dir.appendingPathComponent("out")
    let errURL = dir.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [tool] + arguments
    if let directory { p.currentDirectoryURL = directory }
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    p.standardOutput = try FileHandle(forWritingTo: outURL)
    p.standardError = try FileHandle(forWritingTo: errURL)
    try p.run()
    p.waitUntilExit()
    return ToolResult(
        status: p.terminationStatus, out: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
        err: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
}

/// Strict warnings for every C compile in these tests.
let strictC = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]

/// Compiles and links C (or, with `compiler: "c++"`, C++) `sources` into `dir/name` against the
/// header and the built library. The library is reached through `libmicrosse.so` (linking) and
/// `libmicrosse.so.0` (its soname, loading) links in `dir`, so the test does not depend on `make lib`.
func buildProgram(
    _ name: String, sources: [String], in dir: URL, compiler: String = "cc", flags: [String] = strictC
) throws -> URL {
    for linkName in ["libmicrosse.so", "libmicrosse.so.0"] {
        let link = dir.appendingPathComponent(linkName)
        if !FileManager.default.fileExists(atPath: link.path) {
            try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: libraryPath)
        }
    }
    let out = dir.appendingPathComponent(name)
    let result = try run(
        compiler,
        flags + ["-I", packageRoot.appendingPathComponent("include").path, "-o", out.path] + sources + [
            "-L", dir.path, "-lmicrosse", "-Wl,-rpath,\(dir.path)", "-pthread",
        ])
    guard result.status == 0 else {
        throw TestClientError("\(compiler) failed for \(name):\n\(result.err)")
    }
    return out
}

/// A program started in the background, its standard output read line by line.
final class Background {
    let process = Process()
    private let stdout = Pipe()
    private var buffered = ""
    let stderrURL: URL

    init(_ executable: String, _ arguments: [String], stderr: URL) throws {
        stderrURL = stderr
        _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: stderr)
        try process.run()
    }

    /// The next line of standard output that contains `text` (nil at EOF).
    func line(containing text: String) -> String? {
        while true {
            if let range = buffered.range(of: "\n") {
                let line = String(buffered[..<range.lowerBound])
                buffered.removeSubrange(..<range.upperBound)
                if line.contains(text) { return line }
                continue
            }
            let data = stdout.fileHandleForReading.availableData
            if data.isEmpty { return nil }
            buffered += String(decoding: data, as: UTF8.self)
        }
    }

    /// The port from a "listening on http://HOST:PORT/" line.
    func port() throws -> UInt16 {
        guard let line = line(containing: "listening on"),
            let port = line.split(separator: ":").last.flatMap({ UInt16($0.filter(\.isNumber)) })
        else {
            throw TestClientError("no 'listening on' line; stderr:\n\(stderrText)")
        }
        return port
    }

    var stderrText: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// Sends SIGTERM and waits for the exit; returns the status (nil if it did not exit).
    func terminate(timeout: Double = 10) -> Int32? {
        if process.isRunning { process.terminate() }
        guard eventually(timeout: timeout, { !process.isRunning }) else {
            kill(process.processIdentifier, SIGKILL)
            return nil
        }
        return process.terminationStatus
    }
}
