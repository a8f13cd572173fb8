internal import CJWT

/// Signature checks for RFC 9068 access tokens (`typ: at+jwt`, Mercure draft-08's tokens).
/// libjwt 1.10 refuses to decode a token whose `typ` is not `JWT`, so these tokens are checked
/// with GnuTLS (which libmicrohttpd links already), over the same signing input libjwt uses:
/// the token's first two segments as sent. The algorithm is the verifier's, checked in the
/// header before this runs.
extension JWTVerifier {
    func checkSignatureWithGnuTLS(
        _ token: [UInt8], signature: [UInt8]
    ) throws(AuthError) {
        guard let dot = token.lastIndex(of: UInt8(ascii: ".")) else {
            throw AuthError(.malformedToken, "token has no signature segment")
        }
        let input = Array(token[..<dot])
        let valid: Bool
        switch algorithm {
        case .hs256:
            var mac = [UInt8](repeating: 0, count: 32)
            let rc = key.withUnsafeBytes { k in
                input.withUnsafeBytes { i in
                    mac.withUnsafeMutableBytes { m in
                        gnutls_hmac_fast(
                            GNUTLS_MAC_SHA256, k.baseAddress, k.count, i.baseAddress, i.count, m.baseAddress)
                    }
                }
            }
            valid = rc == 0 && signature.count == mac.count && zip(signature, mac).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
        case .rs256:
            valid = verifyPublicKey(input, signature: signature, GNUTLS_SIGN_RSA_SHA256)
        case .es256:
            // JWS carries r || s (32 bytes each); GnuTLS wants the DER form.
            guard signature.count == 64, let der = Self.derECDSA(signature) else {
                throw AuthError(.signatureInvalid, "token signature invalid")
            }
            valid = verifyPublicKey(input, signature: der, GNUTLS_SIGN_ECDSA_SHA256)
        }
        guard valid else { throw AuthError(.signatureInvalid, "token signature invalid") }
    }

    private func verifyPublicKey(_ input: [UInt8], signature: [UInt8], _ algorithm: gnutls_sign_algorithm_t) -> Bool {
        var pubkey: gnutls_pubkey_t?
        guard gnutls_pubkey_init(&pubkey) == 0, let pubkey else { return false }
        defer { gnutls_pubkey_deinit(pubkey) }
        var pem = key
        var input = input
        var signature = signature
        return pem.withUnsafeMutableBytes { p in
            input.withUnsafeMutableBytes { i in
                signature.withUnsafeMutableBytes { s in
                    var keyDatum = gnutls_datum_t(
                        data: p.baseAddress?.assumingMemoryBound(to: UInt8.self), size: UInt32(p.count))
                    guard gnutls_pubkey_import(pubkey, &keyDatum, GNUTLS_X509_FMT_PEM) == 0 else { return false }
                    var data = gnutls_datum_t(
                        data: i.baseAddress?.assumingMemoryBound(to: UInt8.self), size: UInt32(i.count))
                    var sig = gnutls_datum_t(
                        data: s.baseAddress?.assumingMemoryBound(to: UInt8.self), size: UInt32(s.count))
                    return gnutls_pubkey_verify_data2(pubkey, algorithm, 0, &data, &sig) >= 0
                }
            }
        }
    }

    /// `r || s` as a DER `ECDSA-Sig-Value` (`SEQUENCE { INTEGER r, INTEGER s }`).
    private static func derECDSA(_ rs: [UInt8]) -> [UInt8]? {
        func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
            var v = Array(bytes.drop { $0 == 0 })
            if v.isEmpty || v[0] & 0x80 != 0 { v.insert(0, at: 0) }
            return [0x02, UInt8(v.count)] + v
        }
        let body = integer(rs[0..<32]) + integer(rs[32..<64])
        return [0x30, UInt8(body.count)] + body
    }
}
