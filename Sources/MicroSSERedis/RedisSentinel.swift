import MicroSSECore
import MicroSSEWire

extension RedisURL {
    /// Connects to the primary: the one server of a `redis://` URL, or the primary the sentinels
    /// name (each sentinel asked in turn with `SENTINEL get-master-addr-by-name`, and the answer
    /// checked with `ROLE`, so a sentinel that has not yet seen a failover is not believed).
    /// Sentinels are asked from index `first` on (the one that answered last, so a dead one
    /// costs nothing while another answers). Throws `.unavailable` with every reason when no
    /// primary can be reached.
    package func connectPrimary(timeoutMilliseconds: Int, first: Int = 0) throws(MicroSSEError) -> RedisConnection {
        guard let masterName else { return try RedisConnection(url: self, timeoutMilliseconds: timeoutMilliseconds) }
        var reasons: [String] = []
        for k in 0..<sentinels.count {
            let sentinel = sentinels[(first + k) % sentinels.count]
            do throws(MicroSSEError) {
                let address = try Self.askSentinel(sentinel, masterName, timeoutMilliseconds: timeoutMilliseconds)
                let c = try RedisConnection(
                    host: address.host, port: address.port, password: password, database: database,
                    timeoutMilliseconds: timeoutMilliseconds, name: "\(address) (primary '\(masterName)')")
                let role = try c.command(["ROLE"])
                guard role.array?.first?.text == "master" else {
                    reasons.append("sentinel \(sentinel) named \(address), which is not a primary")
                    continue
                }
                return c
            } catch {
                reasons.append("sentinel \(sentinel): \(error.message)")
            }
        }
        throw MicroSSEError(.unavailable, "cannot connect to Redis at \(self): \(reasons.joined(separator: "; "))")
    }

    /// What the first sentinel that answers says, asking from sentinel `first` on (the one that
    /// answered last time, so a dead sentinel costs one timeout, not one per check): the primary,
    /// how many of its replicas it considers up (not `s_down`, `o_down` or `disconnected`), and
    /// the index of the sentinel. Nil when none answers (or for a plain URL).
    package func namedPrimary(
        timeoutMilliseconds: Int, first: Int = 0
    ) -> (primary: Endpoint, replicasUp: Int?, sentinel: Int)? {
        guard let masterName, !sentinels.isEmpty else { return nil }
        for k in 0..<sentinels.count {
            let i = (first + k) % sentinels.count
            let sentinel = sentinels[i]
            guard
                let c = try? RedisConnection(
                    host: sentinel.host, port: sentinel.port, timeoutMilliseconds: timeoutMilliseconds),
                let named = try? Self.primary(c, masterName)
            else { continue }
            return (named, try? Self.replicasUp(c, masterName), i)
        }
        return nil
    }

    /// How many replicas of `masterName` a sentinel considers up.
    static func replicasUp(_ c: RedisConnection, _ masterName: String) throws(MicroSSEError) -> Int? {
        guard let replicas = try c.command(["SENTINEL", "replicas", masterName]).array else { return nil }
        return replicas.filter { replica in
            guard let kv = replica.array else { return false }
            var i = 0
            while i + 1 < kv.count {
                if kv[i].text == "flags", let flags = kv[i + 1].text {
                    return !flags.split(separator: ",").contains { ["s_down", "o_down", "disconnected"].contains($0) }
                }
                i += 2
            }
            return false
        }.count
    }

    /// The primary's address as one sentinel knows it.
    static func askSentinel(
        _ sentinel: Endpoint, _ masterName: String, timeoutMilliseconds: Int
    ) throws(MicroSSEError) -> Endpoint {
        let c = try RedisConnection(
            host: sentinel.host, port: sentinel.port, timeoutMilliseconds: timeoutMilliseconds,
            name: sentinel.description)
        return try primary(c, masterName)
    }

    /// The primary's address as the sentinel on `c` knows it.
    static func primary(_ c: RedisConnection, _ masterName: String) throws(MicroSSEError) -> Endpoint {
        let reply = try c.command(["SENTINEL", "get-master-addr-by-name", masterName])
        guard let pair = reply.array, pair.count == 2, let host = pair[0].text,
            let port = pair[1].text.flatMap(Int.init)
        else {
            if case .error(let e) = reply { throw MicroSSEError(.unavailable, e) }
            throw MicroSSEError(.unavailable, "does not know a primary named '\(masterName)'")
        }
        return Endpoint(host: host, port: port)
    }
}

extension RedisValue {
    /// Whether this error reply means the server is no longer the primary (a failover happened
    /// or is under way), so the connection must be dropped and the primary found again.
    package var meansNotPrimary: Bool {
        guard case .error(let e) = self else { return false }
        return e.contains("READONLY") || e.hasPrefix("UNBLOCKED") || e.hasPrefix("MASTERDOWN")
            || e.hasPrefix("LOADING")
    }
}
