import Foundation
import MicroSSE

/// A started server on 127.0.0.1 with an ephemeral port, heartbeats off unless `configure` turns
/// them on. The one server factory of every test target.
public func makeServer(_ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> Server {
    var config = ServerConfiguration()
    config.host = "127.0.0.1"
    config.port = 0
    config.heartbeatSeconds = 0
    configure(&config)
    let server = Server(configuration: config)
    try server.start()
    return server
}

/// `POST /events/{channel}` on `port` with `data`; returns the response.
public func postEvent(
    port: UInt16, channel: String, data: String, query: String = "", headers: [(String, String)] = []
) throws -> SimpleResponse {
    try httpRequest(
        port: port, method: "POST", path: "/events/\(channel)\(query.isEmpty ? "" : "?" + query)", headers: headers,
        body: Array(data.utf8))
}

/// The id in a `202 {"id":"…"}` publish reply, or nil for any other answer.
public func publishedID(_ response: SimpleResponse) -> String? {
    guard response.status == 202,
        let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
    else { return nil }
    return json["id"] as? String
}

/// This process's resident set size in KiB (`VmRSS` in /proc/self/status).
public func residentKiB() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return -1 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }
    return -1
}
