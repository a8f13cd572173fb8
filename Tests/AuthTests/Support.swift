import CJWT
import Foundation
import Testing

@testable import MicroSSEAuth

/// A fixed "now" for every test: 2023-11-14T22:13:20Z.
let now = 1_700_000_000

/// A 32-byte HS256 secret.
let secret = Array("0123456789abcdef0123456789abcdef".utf8)

/// Unpadded base64url of `bytes`.
func b64url(_ bytes: [UInt8]) -> String {
    Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
}

func b64url(_ text: String) -> String { b64url(Array(text.utf8)) }

/// A private scratch directory for this test run.
let scratch: URL = {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("microsse-auth-\(getpid())")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}()

/// Runs `openssl` with `arguments` (and `input` as a file given with `-in`); returns its output.
/// Files, not pipes: Foundation's pipe reads fail with EINTR while other tests run processes.
@discardableResult
func openssl(_ arguments: [String], input: Data? = nil) throws -> Data {
    let id = UUID().uuidString
    let outPath = scratch.appendingPathComponent("\(id).out").path
    let inPath = scratch.appendingPathComponent("\(id).in").path
    defer {
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: inPath)
    }
    var args = arguments + ["-out", outPath]
    if let input {
        try input.write(to: URL(fileURLWithPath: inPath))
        // `openssl dgst` takes its input file as an operand, the other commands with `-in`.
        args += arguments.first == "dgst" ? [inPath] : ["-in", inPath]
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    p.arguments = args
    p.standardInput = FileHandle.nullDevice
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw OpenSSLFailed(arguments: arguments) }
    return try Data(contentsOf: URL(fileURLWithPath: outPath))
}

struct OpenSSLFailed: Error {
    let arguments: [String]
}

/// Key pairs made with the `openssl` CLI once per test run, in a temporary directory.
struct KeyPair: Sendable {
    let privatePEM: String
    let publicPEM: String
    let privatePath: String

    static func generate(_ name: String, _ options: [String]) -> KeyPair {
        let priv = scratch.appendingPathComponent("\(name).key").path
        let privatePEM = try! openssl(["genpkey"] + options)
        try! privatePEM.write(to: URL(fileURLWithPath: priv))
        let publicPEM = try! openssl(["pkey", "-in", priv, "-pubout"])
        return KeyPair(
            privatePEM: String(decoding: privatePEM, as: UTF8.self),
            publicPEM: String(decoding: publicPEM, as: UTF8.self),
            privatePath: priv)
    }

    static let rsa = generate("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
    static let rsa2 = generate("rsa2", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
    static let ec = generate("ec", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    static let ec2 = generate("ec2", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
}

/// A token minted by libjwt's encoder with `claims` (a JSON object) and extra header members.
func mint(
    _ alg: jwt_alg_t, key: [UInt8], claims: String = #"{"microsse":{"subscribe":["news"]}}"#,
    headers: [String: String] = [:]
) -> String {
    var jwt: OpaquePointer?
    precondition(jwt_new(&jwt) == 0)
    defer { jwt_free(jwt) }
    let rc = key.withUnsafeBufferPointer { jwt_set_alg(jwt, alg, $0.baseAddress, Int32($0.count)) }
    precondition(rc == 0, "jwt_set_alg \(rc)")
    precondition(jwt_add_grants_json(jwt, claims) == 0, "jwt_add_grants_json")
    for (name, value) in headers { precondition(jwt_add_header(jwt, name, value) == 0) }
    guard let s = jwt_encode_str(jwt) else { fatalError("jwt_encode_str failed") }
    defer { free(s) }
    return String(cString: s)
}

func mintHS(_ claims: String = #"{"microsse":{"subscribe":["news"]}}"#, key: [UInt8] = secret) -> String {
    mint(JWT_ALG_HS256, key: key, claims: claims)
}

func mintRS(_ claims: String = #"{"microsse":{"subscribe":["news"]}}"#, pair: KeyPair = .rsa) -> String {
    mint(JWT_ALG_RS256, key: Array(pair.privatePEM.utf8), claims: claims)
}

func mintES(_ claims: String = #"{"microsse":{"subscribe":["news"]}}"#, pair: KeyPair = .ec) -> String {
    mint(JWT_ALG_ES256, key: Array(pair.privatePEM.utf8), claims: claims)
}

/// A token with exactly this header and claims text, HMAC-SHA256-signed with `key` by openssl.
func handMadeHS(header: String, claims: String, key: [UInt8] = secret) -> String {
    signedHS(b64url(header) + "." + b64url(claims), key: key)
}

/// `input` (the first two segments, as they are) with an HMAC-SHA256 signature by openssl.
func signedHS(_ input: String, key: [UInt8] = secret) -> String {
    let hex = key.map { String(format: "%02x", $0) }.joined()
    let mac = try! openssl(
        ["dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:\(hex)", "-binary"], input: Data(input.utf8))
    return input + "." + b64url(Array(mac))
}

/// A token with exactly this header and claims text, RSA-SHA256-signed by openssl.
func handMadeRS(header: String, claims: String, pair: KeyPair = .rsa) -> String {
    let input = b64url(header) + "." + b64url(claims)
    let sig = try! openssl(["dgst", "-sha256", "-sign", pair.privatePath, "-binary"], input: Data(input.utf8))
    return input + "." + b64url(Array(sig))
}

/// The reason `body` throws, or nil if it does not throw an ``AuthError``.
func refusal(_ body: () throws(AuthError) -> Claims) -> AuthError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}

/// Whether raw libjwt (without MicroSSEAuth's checks) accepts `token` with `key`.
func libjwtAccepts(_ token: String, key: [UInt8]) -> Bool {
    var jwt: OpaquePointer?
    let rc = key.withUnsafeBufferPointer { jwt_decode(&jwt, token, $0.baseAddress, Int32($0.count)) }
    jwt_free(jwt)
    return rc == 0
}
