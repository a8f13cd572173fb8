/// Why a token, a key or a channel pattern was refused.
///
/// `reason` is one line of plain ASCII, suitable as the body of an HTTP 401 response or a log
/// line. It never contains the token, the key or the secret.
public struct AuthError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure; new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short, stable name for the code, e.g. `expired`.
        public let name: String

        /// The token is longer than ``JWTVerifier/maximumTokenLength``.
        public static let tokenTooLarge = Code(name: "tokenTooLarge")
        /// The token is not three base64url segments of JSON header, JSON claims and signature.
        public static let malformedToken = Code(name: "malformedToken")
        /// The header names an algorithm other than the one the configured key implies.
        public static let algorithmRefused = Code(name: "algorithmRefused")
        /// The signature does not verify with the configured key.
        public static let signatureInvalid = Code(name: "signatureInvalid")
        /// `exp` lies in the past, beyond the leeway.
        public static let expired = Code(name: "expired")
        /// `nbf` lies in the future, beyond the leeway.
        public static let notYetValid = Code(name: "notYetValid")
        /// A claim has the wrong type or holds an invalid channel pattern.
        public static let invalidClaims = Code(name: "invalidClaims")
        /// The secret or public key given to ``JWTVerifier`` cannot be used.
        public static let invalidKey = Code(name: "invalidKey")
        /// A channel pattern is not an exact name, a prefix ending in `*`, or `*`.
        public static let invalidPattern = Code(name: "invalidPattern")

        /// The code's name.
        public var description: String { name }
    }

    /// The kind of failure.
    public let code: Code
    /// One line saying what is wrong, e.g. `token expired`.
    public let reason: String

    /// An error with a code and a one-line reason.
    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    /// The reason.
    public var description: String { reason }
}
