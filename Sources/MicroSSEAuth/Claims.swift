/// What a verified token grants, read from its claims
/// `{"sub": …, "exp": …, "nbf": …, "microsse": {"subscribe": [patterns], "publish": [patterns]}}`.
///
/// A token without the `microsse` claim, or with empty lists, is valid and grants nothing.
public struct Claims: Hashable, Sendable {
    /// The channels the bearer may subscribe to.
    public var subscribe: [ChannelPattern]
    /// The channels the bearer may publish to.
    public var publish: [ChannelPattern]
    /// `exp`, in seconds since the epoch; nil if the token never expires.
    public var expiresAt: Int?
    /// `nbf`, in seconds since the epoch; nil if the token is valid from the start.
    public var notBefore: Int?
    /// `sub`, the subject (for logs), if the token names one.
    public var subject: String?

    /// Claims with the given grants and times.
    public init(
        subscribe: [ChannelPattern] = [], publish: [ChannelPattern] = [], expiresAt: Int? = nil,
        notBefore: Int? = nil, subject: String? = nil
    ) {
        self.subscribe = subscribe
        self.publish = publish
        self.expiresAt = expiresAt
        self.notBefore = notBefore
        self.subject = subject
    }

    /// Whether the token grants subscribing to `channel`.
    public func canSubscribe(_ channel: String) -> Bool {
        subscribe.contains { $0.matches(channel) }
    }

    /// Whether the token grants publishing to `channel`.
    public func canPublish(_ channel: String) -> Bool {
        publish.contains { $0.matches(channel) }
    }

    /// Reads the claims object; throws `.invalidClaims` on a claim of the wrong type.
    init(json: JSONValue) throws(AuthError) {
        guard case .object = json else { throw AuthError(.malformedToken, "token claims are not a JSON object") }
        func time(_ name: String) throws(AuthError) -> Int? {
            guard let v = json[name] else { return nil }
            guard let n = v.integer else {
                throw AuthError(.invalidClaims, "token claim \(name) is not an integer number of seconds")
            }
            return n
        }
        expiresAt = try time("exp")
        notBefore = try time("nbf")
        switch json["sub"] {
        case nil: subject = nil
        case .string(let s)?: subject = s
        default: throw AuthError(.invalidClaims, "token claim sub is not a string")
        }
        subscribe = []
        publish = []
        guard let grants = json["microsse"] else { return }
        guard case .object = grants else { throw AuthError(.invalidClaims, "token claim microsse is not an object") }
        func patterns(_ name: String) throws(AuthError) -> [ChannelPattern] {
            guard let list = grants[name] else { return [] }
            guard case .array(let items) = list else {
                throw AuthError(.invalidClaims, "token claim microsse.\(name) is not an array")
            }
            var out: [ChannelPattern] = []
            for item in items {
                guard case .string(let text) = item, let p = try? ChannelPattern(text) else {
                    throw AuthError(.invalidClaims, "token claim microsse.\(name) holds an invalid channel pattern")
                }
                out.append(p)
            }
            return out
        }
        subscribe = try patterns("subscribe")
        publish = try patterns("publish")
    }
}
