import CMicroSSE
import MicroSSECABI
import MicroSSETestSupport
import Testing

private func status(_ server: OpaquePointer, _ path: String, token: String? = nil) throws -> Int {
    var headers = [("Accept", "text/event-stream")]
    if let token { headers.append(("Authorization", "Bearer \(token)")) }
    return try httpRequest(port: msse_server_port(server), path: path, headers: headers, timeout: 2).status
}

@Suite("C ABI: msse_config JWT fields")
struct JWTConfigTests {
    @Test("jwt_secret and public_channels: 401 without a token, public channels open, a granting token streams")
    func secretAndPublicChannels() throws {
        var cfg = msse_config()
        msse_config_init(&cfg)
        #expect(cfg.jwt_secret == nil && cfg.jwt_public_key_pem == nil)
        #expect(cfg.public_channels == nil && cfg.public_channel_count == 0)
        cfg.port = 0
        cfg.heartbeat_seconds = 0
        let server = try TokenMint.secret.withCString { secret in
            try "news".withCString { news in
                try "public.*".withCString { pub in
                    let patterns: [UnsafePointer<CChar>?] = [news, pub]
                    return try patterns.withUnsafeBufferPointer { list in
                        cfg.jwt_secret = secret
                        cfg.public_channels = list.baseAddress
                        cfg.public_channel_count = 2
                        return try startServer(&cfg)  // strings are copied by msse_server_create
                    }
                }
            }
        }
        defer { msse_server_destroy(server) }
        #expect(try status(server, "/events/private") == 401)
        #expect(try status(server, "/events/public.a", token: nil) == 200)
        let token = TokenMint.hs256(TokenMint.claims(subscribe: ["private"]))
        let stream = try EventStreamClient(
            port: msse_server_port(server), path: "/events/private", headers: [("Authorization", "Bearer \(token)")])
        #expect(stream.status == 200)
        #expect(msse_publish(server, "private", nil, nil, "x", 1) == MSSE_OK)
        #expect(try stream.next()?.data == "x")
    }

    @Test("jwt_public_key_pem: RS256 tokens; both keys at once, or a bad key, are MSSE_EINVAL with a reason")
    func publicKeyAndErrors() throws {
        var cfg = testConfig()
        let server = try TokenMint.rsa.publicPEM.withCString { pem in
            cfg.jwt_public_key_pem = pem
            return try startServer(&cfg)
        }
        defer { msse_server_destroy(server) }
        #expect(
            try status(server, "/events/news", token: TokenMint.rs256(TokenMint.claims(subscribe: ["news"]))) == 200)
        #expect(
            try status(server, "/events/news", token: TokenMint.hs256(TokenMint.claims(subscribe: ["news"]))) == 401)

        let both = TokenMint.secret.withCString { s in
            "x".withCString { p in
                createFailure {
                    $0.jwt_secret = s
                    $0.jwt_public_key_pem = p
                }
            }
        }
        #expect(both?.contains("not both") == true)
        let short = "short".withCString { s in createFailure { $0.jwt_secret = s } }
        #expect(short?.contains("at least 32 bytes") == true)
        let noList = createFailure { $0.public_channel_count = 1 }
        #expect(noList?.contains("public_channels is NULL") == true)
    }

    @Test("an older, shorter msse_config (size before jwt_secret) still works: its JWT fields are never read")
    func olderLayout() throws {
        var cfg = testConfig()
        cfg.size = MemoryLayout<msse_config>.offset(of: \msse_config.jwt_secret)!
        // What follows an older caller's struct is not its memory: garbage must not be read.
        let server = try "too short".withCString { garbage in
            cfg.jwt_secret = garbage
            cfg.public_channel_count = 99
            return try startServer(&cfg)
        }
        defer { msse_server_destroy(server) }
        #expect(try status(server, "/events/anything") == 200)
    }
}
