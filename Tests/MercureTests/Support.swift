import Foundation
import MicroSSE
import MicroSSEMercure
import MicroSSETestSupport

/// The trusted issuer and the resource identifier of the draft-08 test hubs.
let issuer = "https://app.example"
let audience = "https://hub.example/.well-known/mercure"

/// A hub serving Mercure (draft-08, or draft-07 with `legacy`), tokens signed with
/// ``TokenMint/secret``.
func mercureHub(legacy: Bool = false, _ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> Server {
    try makeServer {
        $0.jwt = JWTSettings(secret: TokenMint.secret)
        $0.mercure = MercureSettings(
            enabled: true, legacy: legacy, issuers: legacy ? [] : [issuer], audience: legacy ? nil : audience)
        configure(&$0)
    }
}

/// A JSON string literal.
func quoted(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
    return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
}

/// A draft-08 access token (`typ: at+jwt`) granting `actions` on exact `topics` (`*` = all).
func token08(
    publish: [String] = [], subscribe: [String] = [], exp: Int? = TokenMint.now + 600, iss: String? = issuer,
    aud: String? = audience, typ: String = "at+jwt", extraDetails: [String] = []
) -> String {
    func detail(_ action: String, _ topics: [String]) -> String {
        let list = topics.map { #"{"match":\#(quoted($0))}"# }.joined(separator: ",")
        return #"{"type":"https://mercure.rocks/authorization-detail","actions":["\#(action)"],"topics":[\#(list)]}"#
    }
    var details = extraDetails
    if !publish.isEmpty { details.append(detail("publish", publish)) }
    if !subscribe.isEmpty { details.append(detail("subscribe", subscribe)) }
    var members = [#""sub":"user-1","client_id":"app","jti":"j1","iat":\#(TokenMint.now)"#]
    if let iss { members.append(#""iss":\#(quoted(iss))"#) }
    if let aud { members.append(#""aud":\#(quoted(aud))"#) }
    if let exp { members.append(#""exp":\#(exp)"#) }
    members.append(#""authorization_details":[\#(details.joined(separator: ","))]"#)
    return TokenMint.hs256("{" + members.joined(separator: ",") + "}", header: #"{"alg":"HS256","typ":"\#(typ)"}"#)
}

/// A draft-07 token as deployed publishers mint it: the `mercure` claim, no `typ`, `iss`, `aud`.
func token07(publish: [String] = [], subscribe: [String] = []) -> String {
    func list(_ items: [String]) -> String { "[" + items.map(quoted).joined(separator: ",") + "]" }
    return TokenMint.hs256(
        #"{"mercure":{"publish":\#(list(publish)),"subscribe":\#(list(subscribe))}}"#, header: #"{"alg":"HS256"}"#)
}

/// `application/x-www-form-urlencoded` as `URLSearchParams` writes it.
func form(_ fields: [(String, String)]) -> String {
    fields.map { encode($0.0) + "=" + encode($0.1) }.joined(separator: "&")
}

/// A query or form component, percent-encoded (space as `+`).
func encode(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "*"):
            out.append(Character(Unicode.Scalar(b)))
        case UInt8(ascii: " "): out += "+"
        default: out += String(format: "%%%02X", b)
        }
    }
    return out
}

/// `POST /.well-known/mercure` with `fields`, the token as `Authorization: Bearer` when given.
@discardableResult
func publish(
    _ server: Server, _ fields: [(String, String)], token: String?, headers: [(String, String)] = [],
    contentType: String = "application/x-www-form-urlencoded"
) throws -> SimpleResponse {
    var h = [("Content-Type", contentType)] + headers
    if let token { h.append(("Authorization", "Bearer \(token)")) }
    return try httpRequest(
        port: server.port, method: "POST", path: "/.well-known/mercure", headers: h, body: Array(form(fields).utf8))
}

/// Opens `GET /.well-known/mercure?query`.
func subscribe(_ server: Server, _ query: [(String, String)], headers: [(String, String)] = []) throws
    -> EventStreamClient
{
    try EventStreamClient(port: server.port, path: "/.well-known/mercure?" + form(query), headers: headers)
}

/// `GET /.well-known/mercure?query` answered without a stream (a refusal).
func subscribeRefused(_ server: Server, _ query: [(String, String)], headers: [(String, String)] = []) throws
    -> SimpleResponse
{
    try httpRequest(
        port: server.port, path: "/.well-known/mercure?" + form(query),
        headers: [("Accept", "text/event-stream")] + headers)
}

/// Whether `id` is `urn:uuid:` and a version-4 UUID.
func isUUIDv4URN(_ id: String) -> Bool {
    guard id.hasPrefix("urn:uuid:"), let uuid = UUID(uuidString: String(id.dropFirst(9))) else { return false }
    let text = String(id.dropFirst(9))
    return text == uuid.uuidString.lowercased() && Array(text)[14] == "4"
}
