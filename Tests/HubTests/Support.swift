import Foundation
import MicroSSE
import MicroSSETestSupport
import Synchronization
import Testing

/// A hub (`microsse serve` settings: publishing on) on 127.0.0.1 with an ephemeral port and
/// heartbeats off unless a test turns them on.
func makeHub(_ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> Server {
    try makeServer {
        $0.publishing = true
        configure(&$0)
    }
}

/// `POST /events/{channel}` with `body`; returns the response.
@discardableResult
func post(
    _ server: Server, _ channel: String, _ body: String, query: String = "", token: String? = nil,
    headers: [(String, String)] = []
) throws -> SimpleResponse {
    var h = headers
    if let token { h.append(("Authorization", "Bearer \(token)")) }
    return try postEvent(port: server.port, channel: channel, data: body, query: query, headers: h)
}

/// Publishes over HTTP and returns the id from the `202` reply's JSON.
func publishOverHTTP(_ server: Server, _ channel: String, _ body: String, query: String = "") throws -> String {
    let r = try post(server, channel, body, query: query)
    guard let id = publishedID(r) else { throw TestClientError("publish failed: \(r.status) \(r.text)") }
    return id
}

/// Opens a stream of `path` and checks it is one.
func subscribe(_ server: Server, _ path: String, headers: [(String, String)] = []) throws -> EventStreamClient {
    let c = try EventStreamClient(port: server.port, path: path, headers: headers)
    #expect(c.status == 200, "GET \(path) answered \(c.status)")
    return c
}

/// Waits until the server counts `n` open streams (a stream is registered when its head is sent,
/// so this also tells that a subscriber is registered for live events).
@discardableResult
func waitForClients(_ server: Server, _ n: Int, timeout: Double = 5) -> Bool {
    eventually(timeout: timeout) { server.statistics.clients == n }
}

/// `/stats` parsed.
func stats(_ server: Server) throws -> [String: Int] {
    let r = try httpRequest(port: server.port, path: "/stats")
    let json = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] ?? [:]
    return json.compactMapValues { $0 as? Int }
}

/// glibc's `malloc_trim` (in `<malloc.h>`, which the Glibc module does not import).
@_silgen_name("malloc_trim") func malloc_trim(_ pad: Int) -> Int32

/// The resident set size after returning freed heap pages to the system (`malloc_trim`), so it
/// tracks memory in use rather than what the allocator keeps cached from earlier work.
func liveResidentKiB() -> Int {
    _ = malloc_trim(0)
    return residentKiB()
}

/// Whether `text` is one line of text ending in a newline (the one-line reasons of 4xx replies).
func isOneLine(_ text: String) -> Bool {
    text.hasSuffix("\n") && !text.dropLast().contains("\n") && text.count > 1
}

/// Runs `body` on a new thread; `join()` waits for it.
final class Worker: Sendable {
    private let done = DispatchSemaphore(value: 0)
    init(_ body: @escaping @Sendable () -> Void) {
        let done = self.done
        Thread.detachNewThread {
            body()
            done.signal()
        }
    }
    func join() { done.wait() }
}

/// A flag shared between a test and its worker threads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// The path of the built `microsse` executable (in the build directory, next to the tests).
func microsseExecutable() -> String? {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("microsse").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    let fallback = FileManager.default.currentDirectoryPath + "/.build/debug/microsse"
    return FileManager.default.isExecutableFile(atPath: fallback) ? fallback : nil
}

/// `/stats` of a hub on `port`, parsed.
func hubStats(_ port: UInt16) throws -> [String: Int] {
    let r = try httpRequest(port: port, path: "/stats")
    let json = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] ?? [:]
    return json.compactMapValues { $0 as? Int }
}

/// The resident set size of process `pid` in KiB (`VmRSS` in /proc/PID/status), or 0.
func residentKiB(of pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
    return 0
}
