import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

/// Whether the long scenarios run (`make test-long` sets MICROSSE_LONG_TESTS=1).
private let longTests = getenv("MICROSSE_LONG_TESTS").map { String(cString: $0) == "1" } ?? false

@Suite("MercureHubDeath: a hub that dies without a word")
struct MercureHubDeathTests {
    @Test(
        "SIGKILL: the other hubs end its subscriptions once it has been silent for 20 s",
        .enabled(if: longTests, "MICROSSE_LONG_TESTS=1 (make test-long): waits out the 20 s silence"))
    func killedHub() throws {
        let redis = try RedisServer()
        let arguments = [
            "serve", "--port", "0", "--jwt-secret", TokenMint.secret, "--mercure", "--mercure-legacy",
            "--mercure-subscriptions", "--redis", redis.url,
        ]
        let a = try ServerProcess(arguments)
        defer { a.signal(SIGTERM) }
        let b = try ServerProcess(arguments)
        defer { b.signal(SIGKILL) }
        let token = token07(subscribe: ["*"])
        let auth = [("Authorization", "Bearer " + token)]
        let watcher = try EventStreamClient(port: a.port, path: "/.well-known/mercure?topic=*", headers: auth)
        defer { watcher.close() }
        _ = try watcher.next(timeout: 10)  // its own subscription
        let member = try EventStreamClient(port: b.port, path: "/.well-known/mercure?topic=room", headers: auth)
        defer { member.close() }
        let begun = try #require(try watcher.next(timeout: 10))
        let subscriber = try #require(jsonObject(begun.data)?["subscriber"] as? String)
        b.signal(SIGKILL)
        let started = Date()
        let ended = try #require(try watcher.next(timeout: 60))
        #expect(jsonObject(ended.data)?["subscriber"] as? String == subscriber)
        #expect(jsonObject(ended.data)?["active"] as? Bool == false)
        #expect(Date().timeIntervalSince(started) >= 15)  // not before the hub fell silent
        #expect(try !subscribersListed(port: a.port, token: token).contains(subscriber))
    }
}

/// The subscribers the hub process on `port` lists.
private func subscribersListed(port: UInt16, token: String) throws -> [String] {
    let r = try httpRequest(
        port: port, path: "/.well-known/mercure/subscriptions", headers: [("Authorization", "Bearer " + token)])
    guard r.status == 200, let list = jsonObject(r.text)?["subscriptions"] as? [[String: Any]] else { return [] }
    return list.compactMap { $0["subscriber"] as? String }
}
