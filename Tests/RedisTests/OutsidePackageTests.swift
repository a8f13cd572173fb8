import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Testing

/// A Swift package outside this repository can use Redis: a scratch package that depends on this
/// checkout by path (its dependencies resolve as pinned in this package's Package.resolved) adds
/// the `MicroSSE` and `MicroSSERedis` products, is built with the same toolchain, and its program
/// publishes through a real redis-server to a hub in this process. Building the scratch package
/// compiles every dependency again (minutes), so it runs in `make test-long` only.
@Suite("MicroSSERedis from a package outside this repository")
struct OutsidePackageTests {
    @Test(
        "a scratch package built against this checkout publishes through Redis",
        .enabled(if: ProcessInfo.processInfo.environment["MICROSSE_LONG_TESTS"] == "1"),
        .timeLimit(.minutes(30)))
    func scratchPackage() throws {
        let redis = try RedisServer()
        let prefix = uniquePrefix("outside")
        let hub = try makeHub(redis, prefix: prefix)
        defer { hub.stop() }
        let stream = try EventStreamClient(port: hub.port, path: "/events/news")
        #expect(stream.status == 200)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("microsse-outside-\(UUID().uuidString)")
        try FileManager.default.createDirectory(
            at: dir.appendingPathComponent("Sources/outside"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let identity = URL(fileURLWithPath: packageRoot).lastPathComponent
        try """
        // swift-tools-version:6.0
        import PackageDescription

        let package = Package(
            name: "Outside",
            dependencies: [.package(path: \(packageRoot.debugDescription))],
            targets: [
                .executableTarget(
                    name: "outside",
                    dependencies: [
                        .product(name: "MicroSSE", package: \(identity.debugDescription)),
                        .product(name: "MicroSSERedis", package: \(identity.debugDescription)),
                    ]
                )
            ],
            swiftLanguageModes: [.v6]
        )

        """.write(to: dir.appendingPathComponent("Package.swift"), atomically: true, encoding: .utf8)
        try """
        import MicroSSE
        import MicroSSERedis

        var config = ServerConfiguration()
        config.port = 0
        config.redisKeyPrefix = CommandLine.arguments[2]
        config.redis = try RedisURL(CommandLine.arguments[1])
        let server = try Server(validating: config)
        try server.start()
        print("published", try server.publish("hello from outside", to: "news"))
        server.stop()

        """.write(to: dir.appendingPathComponent("Sources/outside/main.swift"), atomically: true, encoding: .utf8)
        // The same dependency versions as this checkout, from SwiftPM's cache of them.
        try FileManager.default.copyItem(
            atPath: packageRoot + "/Package.resolved", toPath: dir.appendingPathComponent("Package.resolved").path)

        let build = try runTool(["swift", "build", "--package-path", dir.path], timeout: 25 * 60)
        try #require(build.status == 0, "\(build.output)")
        let program = try runTool([dir.appendingPathComponent(".build/debug/outside").path, redis.url, prefix])
        try #require(program.status == 0, "\(program.output)")
        // Its log lines share the output; the id is on the line it printed.
        let published = program.output.split(separator: "\n").first { $0.hasPrefix("published ") }
        let id = String(try #require(published, "\(program.output)").dropFirst("published ".count))
        #expect(id.contains("-"), "a Redis stream id: \(id)")
        let event = try #require(try stream.next(timeout: 10))
        #expect(event.data == "hello from outside")
        #expect(event.lastEventID == id)
    }
}

/// Runs `arguments` (the first found on PATH) with stdout and stderr in one file, killing it after
/// `timeout` seconds; returns its status and output.
private func runTool(_ arguments: [String], timeout: Double = 60) throws -> (status: Int32, output: String) {
    let log = FileManager.default.temporaryDirectory.appendingPathComponent("microsse-tool-\(UUID().uuidString)")
    _ = FileManager.default.createFile(atPath: log.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: log) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let handle = try FileHandle(forWritingTo: log)
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(100_000) }
    if process.isRunning {
        process.terminate()
        process.waitUntilExit()
    }
    try handle.close()
    return (process.terminationStatus, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
}
