import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

/// Runs Tests/MercureTests/php/publish.php (Symfony's `Hub` with a `StaticTokenProvider`).
private func symfonyPublish(
    _ hub: Server, token: String, topic: String, data: String, private isPrivate: Bool = false
) throws -> (status: Int32, id: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/php")
    p.arguments =
        [
            "-d", "include_path=/usr/share/php", packageRoot + "/Tests/MercureTests/php/publish.php",
            "http://127.0.0.1:\(hub.port)/.well-known/mercure", token, topic, data,
        ] + (isPrivate ? ["private"] : [])
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let id = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationStatus, id, stderr)
}

@Suite("Symfony's Mercure publisher (Debian's php-symfony-mercure)")
struct SymfonyTests {
    @Test("draft-07 hub: Symfony publishes public and private updates; subscribers get them with the id Symfony got")
    func legacyHub() throws {
        let hub = try mercureHub(legacy: true)
        defer { hub.stop() }
        let topic = "https://example.com/books/1"
        let anonymous = try subscribe(hub, [("topic", topic)])
        defer { anonymous.close() }
        let granted = try subscribe(
            hub, [("topic", topic)], headers: [("Cookie", "mercureAuthorization=\(token07(subscribe: [topic]))")])
        defer { granted.close() }
        let token = token07(publish: ["*"])
        let secret = try symfonyPublish(hub, token: token, topic: topic, data: "{\"private\":true}", private: true)
        #expect(secret.status == 0, "\(secret.stderr)")
        #expect(isUUIDv4URN(secret.id), "\(secret.id.debugDescription)")
        let open = try symfonyPublish(hub, token: token, topic: topic, data: "a b&c=d+e")
        #expect(open.status == 0, "\(open.stderr)")
        #expect(try anonymous.next().map { [$0.id, $0.data] } == [open.id, "a b&c=d+e"])
        #expect(try granted.events(2).map(\.id) == [secret.id, open.id])
        // A token the hub refuses is Symfony's exception, not a silent success.
        let refused = try symfonyPublish(hub, token: token07(publish: ["other"]), topic: topic, data: "x")
        #expect(refused.status == 1 && refused.stderr.contains("403"))
    }

    @Test("draft-08 hub: the same publisher with an at+jwt token")
    func draft08Hub() throws {
        let hub = try mercureHub()
        defer { hub.stop() }
        let s = try subscribe(
            hub, [("match", "urn:example:1")],
            headers: [("Authorization", "Bearer \(token08(subscribe: ["urn:example:1"]))")])
        defer { s.close() }
        let r = try symfonyPublish(
            hub, token: token08(publish: ["urn:example:1"]), topic: "urn:example:1", data: "d", private: true)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try s.next()?.id == r.id)
    }
}
