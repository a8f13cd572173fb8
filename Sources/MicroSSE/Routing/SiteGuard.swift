import MicroSSETransport

/// Refuses what a browser on another site could make this server do:
///
/// - With ``ServerConfiguration/allowedHosts`` set, any request whose `Host` (without its port)
///   is not listed gets `421` (DNS rebinding: a page on a name the attacker controls, resolved
///   to this server, would otherwise be answered as if it were same-origin).
/// - A publish whose `Origin` is present and is neither in the CORS list nor this server's own
///   origin (its `Host`) gets `403`: a CORS list only stops a page from *reading* answers, and
///   a cross-site page can *send* a `POST` without a preflight (a form or `fetch` with a simple
///   content type). Clients that are not browsers send no `Origin` and are not affected.
///
/// Neither replaces a publish token: anything that is not a browser can set any `Host` and
/// `Origin`. A hub reachable by others should set ``ServerConfiguration/publishToken``.
struct SiteGuard: RequestGuard {
    /// Lowercased allowed host names; empty = any.
    let allowedHosts: Set<String>
    let cors: CORSPolicy

    init(allowedHosts: [String], corsOrigins: [String]) {
        self.allowedHosts = Set(allowedHosts.map { Self.lowercased($0) })
        self.cors = CORSPolicy(origins: corsOrigins)
    }

    func check(_ request: Request, _ access: Access) -> Response? {
        if !allowedHosts.isEmpty {
            let host = request.header("Host").map { Self.lowercased(Self.hostName($0)) }
            guard let host, allowedHosts.contains(host) else {
                let named = request.header("Host").map { "host \($0.debugDescription)" } ?? "a request without Host"
                return .text("\(named) is not served here (not in the allowed hosts)", status: 421)
            }
        }
        if case .publish = access, let origin = request.header("Origin"), !cors.allowsPublish(from: origin, request) {
            return .text("origin not allowed to publish: \(origin.debugDescription)", status: 403)
        }
        return nil
    }

    /// `authority` without its port: `example.com:8080` → `example.com`, `[::1]:80` → `::1`.
    static func hostName(_ authority: String) -> String {
        var host = Substring(authority)
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return String(host) }
            return String(host[host.index(after: host.startIndex)..<close])
        }
        if let colon = host.firstIndex(of: ":"), !host[host.index(after: colon)...].contains(":") {
            host = host[..<colon]
        }
        return String(host)
    }

    static func lowercased(_ s: String) -> String {
        String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
    }
}
