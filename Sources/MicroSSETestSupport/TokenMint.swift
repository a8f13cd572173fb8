// Mints JSON Web Tokens for tests with the `openssl` command (no JWT library needed).
import Foundation

/// Tokens signed by the `openssl` CLI: HS256 with a secret, RS256 with a key pair made once per
/// run. Files, not pipes, carry openssl's input and output.
public enum TokenMint {
    /// A 32-byte-plus HS256 secret the tests configure hubs with.
    public static let secret = "microsse-test-secret-0123456789abcdef"

    /// The scratch directory for keys and openssl's files.
    public static let directory: URL = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("microsse-jwt-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }()

    /// An RSA-2048 key pair: the private key's path and the public key's PEM text and path.
    public static let rsa: (privatePath: String, publicPEM: String, publicPath: String) = {
        let priv = directory.appendingPathComponent("rsa.key").path
        let pub = directory.appendingPathComponent("rsa.pub").path
        try! openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", priv])
        try! openssl(["pkey", "-in", priv, "-pubout", "-out", pub])
        return (priv, try! String(contentsOfFile: pub, encoding: .utf8), pub)
    }()

    /// Seconds since the epoch, now.
    public static var now: Int { Int(Date().timeIntervalSince1970) }

    /// Unpadded base64url.
    public static func b64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// An HS256 token with these claims (JSON text), signed with `key`.
    public static func hs256(
        _ claims: String, key: String = secret, header: String = #"{"alg":"HS256","typ":"JWT"}"#
    ) -> String {
        let input = b64url(Array(header.utf8)) + "." + b64url(Array(claims.utf8))
        let hex = key.utf8.map { String(format: "%02x", $0) }.joined()
        let mac = try! opensslOutput(["dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:\(hex)", "-binary"], input)
        return input + "." + b64url(mac)
    }

    /// An RS256 token with these claims, signed with ``rsa``'s private key.
    public static func rs256(_ claims: String) -> String {
        let input = b64url(Array(#"{"alg":"RS256","typ":"JWT"}"#.utf8)) + "." + b64url(Array(claims.utf8))
        let sig = try! opensslOutput(["dgst", "-sha256", "-sign", rsa.privatePath, "-binary"], input)
        return input + "." + b64url(sig)
    }

    /// Claims granting `subscribe` and `publish` patterns, with optional `exp`, `nbf` and `sub`.
    public static func claims(
        subscribe: [String] = [], publish: [String] = [], exp: Int? = nil, nbf: Int? = nil, sub: String? = nil
    ) -> String {
        func list(_ items: [String]) -> String { "[" + items.map { "\"\($0)\"" }.joined(separator: ",") + "]" }
        var members = [#""microsse":{"subscribe":\#(list(subscribe)),"publish":\#(list(publish))}"#]
        if let exp { members.append("\"exp\":\(exp)") }
        if let nbf { members.append("\"nbf\":\(nbf)") }
        if let sub { members.append("\"sub\":\"\(sub)\"") }
        return "{" + members.joined(separator: ",") + "}"
    }

    /// Runs openssl on `input` (written to a file given as the last operand); returns its output.
    private static func opensslOutput(_ arguments: [String], _ input: String) throws -> [UInt8] {
        let id = UUID().uuidString
        let inPath = directory.appendingPathComponent("\(id).in").path
        let outPath = directory.appendingPathComponent("\(id).out").path
        defer {
            try? FileManager.default.removeItem(atPath: inPath)
            try? FileManager.default.removeItem(atPath: outPath)
        }
        try Data(input.utf8).write(to: URL(fileURLWithPath: inPath))
        try openssl(arguments + ["-out", outPath, inPath])
        return Array(try Data(contentsOf: URL(fileURLWithPath: outPath)))
    }

    private static func openssl(_ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = arguments
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestClientError("openssl \(arguments.first ?? "") failed") }
    }
}
