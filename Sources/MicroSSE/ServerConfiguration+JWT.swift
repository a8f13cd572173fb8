import MicroSSEAuth

/// The key that verifies subscriber and publisher tokens (``ServerConfiguration/jwt``).
///
/// The key fixes the algorithm, never the token: a secret means HS256, an RSA public key
/// RS256, a P-256 public key ES256. Tokens carry their grants as
/// `{"microsse": {"subscribe": [patterns], "publish": [patterns]}, "exp": …, "nbf": …}`.
public struct JWTSettings: Sendable, Equatable {
    /// What verifies the signatures.
    public enum Key: Sendable, Equatable {
        /// An HS256 shared secret, at least 32 bytes.
        case secret([UInt8])
        /// A PEM `PUBLIC KEY` block (SubjectPublicKeyInfo): RSA (≥ 2048 bits, RS256) or P-256
        /// (ES256).
        case publicKeyPEM(String)
    }

    /// The verification key.
    public var key: Key

    /// HS256 with `secret`'s UTF-8 bytes (at least 32).
    public init(secret: String) {
        key = .secret(Array(secret.utf8))
    }

    /// HS256 with these secret bytes (at least 32).
    public init(secret: [UInt8]) {
        key = .secret(secret)
    }

    /// RS256 or ES256, chosen by the PEM public key given.
    public init(publicKeyPEM: String) {
        key = .publicKeyPEM(publicKeyPEM)
    }

    /// RS256 or ES256 with the PEM public key read from `path` (what `microsse serve --jwt-key`
    /// does).
    ///
    /// - Throws: ``MicroSSEError`` with code `.invalidArgument` and a one-line reason when the
    ///   file cannot be read, is larger than 64 KiB, is not UTF-8 text or has no PEM block.
    public init(publicKeyFile path: String) throws(MicroSSEError) {
        key = .publicKeyPEM(try readPEMFile(path, what: "JWT key", maxBytes: 64 << 10))
    }

    /// The verifier for this key; `.invalidArgument` with the verifier's reason if it is unusable.
    func makeVerifier() throws(MicroSSEError) -> JWTVerifier {
        do throws(AuthError) {
            switch key {
            case .secret(let secret): return try JWTVerifier(secret: secret)
            case .publicKeyPEM(let pem): return try JWTVerifier(publicKeyPEM: pem)
            }
        } catch {
            throw MicroSSEError(.invalidArgument, "jwt: \(error.reason)")
        }
    }
}

extension ServerConfiguration {
    /// ``jwt`` must give a usable key, and ``publicChannels`` valid patterns (and need ``jwt``).
    func validateJWT() throws(MicroSSEError) {
        if let jwt { _ = try jwt.makeVerifier() }
        guard jwt != nil || publicChannels.isEmpty else {
            throw MicroSSEError(.invalidArgument, "publicChannels needs jwt (without it every channel is public)")
        }
        for pattern in publicChannels {
            do throws(AuthError) {
                _ = try ChannelPattern(pattern)
            } catch {
                throw MicroSSEError(.invalidArgument, "publicChannels: \(error.reason): \(pattern.debugDescription)")
            }
        }
    }
}
