import MicroSSEAuth

extension Server {
    /// Like the two-argument `setAuthorizer(_:)`, with the claims of
    /// the request's token when ``ServerConfiguration/jwt`` is set and the token verifies now
    /// (nil without JWT, without a token, with an invalid one, or with the static publish token).
    ///
    /// On the channel routes the authorizer runs after the JWT check has passed, so it can only
    /// narrow what the token grants (by `sub`, say). On custom routes and stream routes the hub
    /// does not check tokens: the claims are what the authorizer has to decide with. The token
    /// is looked for as for the channel routes (`Authorization: Bearer`, the cookie
    /// `microsseAuthorization`, the query parameter `authorization`); for a publish, only in
    /// `Authorization: Bearer`. Replaces any authorizer set before.
    public func setAuthorizer(_ authorizer: @escaping @Sendable (Request, Access, Claims?) -> Authorization) {
        let jwt = hub.jwt
        setAuthorizer { request, access in authorizer(request, access, jwt?.claims(for: request, access)) }
    }
}
