/// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo) checked by hand before libjwt sees it, so that the
/// algorithm follows from the key and never from a token.
struct PublicKey {
    /// The signature algorithm the key implies.
    let algorithm: JWTVerifier.Algorithm
    /// The key re-encoded as one canonical PEM block: the exact bytes handed to libjwt.
    let canonicalPEM: [UInt8]

    /// Smallest RSA modulus accepted, in bits.
    static let minimumRSABits = 2048

    // Object identifiers, as DER contents.
    private static let rsaEncryption: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01]
    private static let rsaPSS: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A]
    private static let ecPublicKey: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]
    private static let prime256v1: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]
    private static let ed25519: [UInt8] = [0x2B, 0x65, 0x70]
    private static let ed448: [UInt8] = [0x2B, 0x65, 0x71]

    init(pem: String) throws(AuthError) {
        let der = try Self.pemBody(pem)
        algorithm = try Self.algorithm(der: der)
        var text = "-----BEGIN PUBLIC KEY-----\n"
        let b64 = Array(Base64.encodeStandard(der).utf8)
        var i = 0
        while i < b64.count {
            text += String(decoding: b64[i..<min(i + 64, b64.count)], as: UTF8.self) + "\n"
            i += 64
        }
        text += "-----END PUBLIC KEY-----\n"
        canonicalPEM = Array(text.utf8)
    }

    private static func bad(_ reason: String) -> AuthError { AuthError(.invalidKey, reason) }

    /// The DER inside the one PEM block of `pem`, which must be a `PUBLIC KEY`.
    private static func pemBody(_ pem: String) throws(AuthError) -> [UInt8] {
        let lines = pem.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }).map {
            $0.trimmingSpaces()
        }
        guard let begin = lines.firstIndex(where: { $0.hasPrefix("-----BEGIN ") }) else {
            throw bad("key is not PEM (no -----BEGIN line)")
        }
        let label = lines[begin].dropFirst(11)
        guard label.hasSuffix("-----") else { throw bad("key is not PEM (bad -----BEGIN line)") }
        switch label.dropLast(5) {
        case "PUBLIC KEY": break
        case "RSA PUBLIC KEY":
            throw bad("PKCS#1 RSA PUBLIC KEY is not accepted; give a PUBLIC KEY (openssl pkey -pubin -pubout)")
        case "CERTIFICATE":
            throw bad("a certificate is not accepted; give its PUBLIC KEY (openssl x509 -pubkey -noout)")
        case let l where l.hasSuffix("PRIVATE KEY"):
            throw bad("a private key is not accepted; give the PUBLIC KEY (openssl pkey -pubout)")
        default: throw bad("PEM block is not a PUBLIC KEY")
        }
        guard let end = lines[begin...].firstIndex(where: { $0 == "-----END PUBLIC KEY-----" }) else {
            throw bad("PEM block has no -----END PUBLIC KEY----- line")
        }
        guard !lines[(end + 1)...].contains(where: { $0.hasPrefix("-----BEGIN ") }) else {
            throw bad("key file holds more than one PEM block")
        }
        var body: [UInt8] = []
        for line in lines[(begin + 1)..<end] { body += Array(line.utf8) }
        guard let der = Base64.decodeStandard(body), !der.isEmpty else { throw bad("PEM body is not valid base64") }
        return der
    }

    /// The algorithm a DER SubjectPublicKeyInfo implies: RS256 for an RSA key of at least 2048
    /// bits, ES256 for a P-256 key; anything else is refused.
    private static func algorithm(der: [UInt8]) throws(AuthError) -> JWTVerifier.Algorithm {
        let malformed = bad("public key is not a valid DER SubjectPublicKeyInfo")
        var outer = DER(der[...])
        guard var spki = outer.read(tag: 0x30), outer.isEmpty, var algID = spki.read(tag: 0x30),
            let keyBits = spki.read(tag: 0x03)?.rest, spki.isEmpty, let oid = algID.read(tag: 0x06)?.rest,
            keyBits.first == 0
        else { throw malformed }
        let key = keyBits.dropFirst()
        if oid.elementsEqual(rsaEncryption) {
            // Parameters: NULL (required by RFC 3279, tolerated when absent).
            if !algID.isEmpty {
                guard let null = algID.read(tag: 0x05), null.isEmpty, algID.isEmpty else { throw malformed }
            }
            var k = DER(key)
            guard var rsa = k.read(tag: 0x30), k.isEmpty, var n = rsa.read(tag: 0x02)?.rest,
                let e = rsa.read(tag: 0x02)?.rest, rsa.isEmpty, let nFirst = n.first, nFirst & 0x80 == 0,
                let eLast = e.last, eLast & 1 == 1, e.first! & 0x80 == 0
            else { throw malformed }
            while n.first == 0 { n = n.dropFirst() }
            let bits = n.isEmpty ? 0 : n.count * 8 - n.first!.leadingZeroBitCount
            guard bits >= minimumRSABits else {
                throw bad("RSA key has \(bits) bits; at least \(minimumRSABits) are required")
            }
            return .rs256
        }
        if oid.elementsEqual(ecPublicKey) {
            guard let curve = algID.read(tag: 0x06)?.rest, algID.isEmpty else { throw malformed }
            guard curve.elementsEqual(prime256v1) else {
                throw bad("EC key is not on curve P-256; only ES256 is accepted")
            }
            let valid = (key.count == 65 && key.first == 4) || (key.count == 33 && (key.first == 2 || key.first == 3))
            guard valid else { throw malformed }
            return .es256
        }
        if oid.elementsEqual(rsaPSS) { throw bad("RSA-PSS keys are not accepted; give an rsaEncryption key") }
        if oid.elementsEqual(ed25519) || oid.elementsEqual(ed448) {
            throw bad("EdDSA keys are not accepted; give an RSA or P-256 key")
        }
        throw bad("public key type is not RSA or EC P-256")
    }
}

/// A reader of DER tag-length-value items (definite, minimally encoded lengths only).
struct DER {
    /// What has not been read yet.
    private(set) var rest: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { rest = bytes }

    var isEmpty: Bool { rest.isEmpty }

    /// Reads one item with tag `tag`; returns a reader over its contents.
    mutating func read(tag: UInt8) -> DER? {
        var r = rest
        guard r.popFirst() == tag, let first = r.popFirst() else { return nil }
        var length = 0
        if first < 0x80 {
            length = Int(first)
        } else {
            let n = Int(first & 0x7F)
            guard (1...3).contains(n), r.count >= n, r.first != 0 else { return nil }
            for _ in 0..<n { length = length << 8 | Int(r.popFirst()!) }
            guard length >= 0x80 else { return nil }
        }
        guard r.count >= length else { return nil }
        let contents = r.prefix(length)
        rest = r.dropFirst(length)
        return DER(contents)
    }
}

extension Substring {
    /// The text without leading and trailing spaces and tabs.
    func trimmingSpaces() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return s
    }
}
