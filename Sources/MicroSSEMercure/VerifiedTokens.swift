import Synchronization

/// Tokens this hub verified recently, by their text, with the grants they carry: a publisher
/// sends the same token with every update, and each request reads it twice (its head is
/// admitted, then the request is handled), so most verifications are repeats. Only verified
/// tokens are kept (a refused one is checked again each time); a kept token whose `exp` has
/// come is verified afresh, which refuses it. Bounded by count and bytes: emptied when full.
final class VerifiedTokens: Sendable {
    static let capacity = 256
    static let byteCapacity = 1 << 20

    private struct State {
        var grants: [String: Grants] = [:]
        var bytes = 0
    }

    private let state = Mutex(State())

    /// The grants of `token`, from the cache or read by `reader` (whose successes are kept).
    func grants(_ token: String, now: Int, reader: TokenReader) throws(InvalidToken) -> Grants {
        if let known = state.withLock({ $0.grants[token] }), known.expiresAt.map({ $0 > now }) ?? true {
            return known
        }
        let grants = try reader.grants(token, now: now)
        state.withLock { s in
            let cost = token.utf8.count + 256
            if s.grants.count >= Self.capacity || s.bytes + cost > Self.byteCapacity {
                s.grants.removeAll(keepingCapacity: true)
                s.bytes = 0
            }
            if s.grants.updateValue(grants, forKey: token) == nil { s.bytes += cost }
        }
        return grants
    }
}
