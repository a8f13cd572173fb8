import CMicroSSE
import MicroSSECABI
import MicroSSETestSupport
import Testing

/// Creates and starts a server from `cfg`; nil (and the error message recorded) on failure.
private func start(_ cfg: inout msse_config) throws -> OpaquePointer {
    var srv: OpaquePointer?
    let rc = msse_server_create(&cfg, &srv)
    try #require(rc == MSSE_OK, "msse_server_create: \(rc) \(String(cString: msse_server_errmsg(srv)))")
    let server = try #require(srv)
    try #require(msse_server_start(server) == MSSE_OK)
    return server
}

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
                        return try start(&cfg)  // strings are copied by msse_server_create
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
        var cfg = msse_config()
        msse_config_init(&cfg)
        cfg.port = 0
        cfg.heartbeat_seconds = 0
        let server = try TokenMint.rsa.publicPEM.withCString { pem in
            cfg.jwt_public_key_pem = pem
            return try start(&cfg)
        }
        defer { msse_server_destroy(server) }
        #expect(
            try status(server, "/events/news", token: TokenMint.rs256(TokenMint.claims(subscribe: ["news"]))) == 200)
        #expect(
            try status(server, "/events/news", token: TokenMint.hs256(TokenMint.claims(subscribe: ["news"]))) == 401)

        func createFails(_ configure: (inout msse_config) -> Void) -> String? {
            var c = msse_config()
            msse_config_init(&c)
            configure(&c)
            var srv: OpaquePointer?
            guard msse_server_create(&c, &srv) == MSSE_EINVAL else {
                msse_server_destroy(srv)
                return nil
            }
            defer { msse_server_destroy(srv) }
            return String(cString: msse_server_errmsg(srv))
        }
        let both = TokenMint.secret.withCString { s in
            "x".withCString { p in
                createFails {
                    $0.jwt_secret = s
                    $0.jwt_public_key_pem = p
                }
            }
        }
        #expect(both?.contains("not both") == true)
        let short = "short".withCString { s in createFails { $0.jwt_secret = s } }
        #expect(short?.contains("at least 32 bytes") == true)
        let noList = createFails { $0.public_channel_count = 1 }
        #expect(noList?.contains("public_channels is NULL") == true)
    }

    @Test("an older, shorter msse_config (size before jwt_secret) still works: its JWT fields are never read")
    func olderLayout() throws {
        var cfg = msse_config()
        msse_config_init(&cfg)
        cfg.port = 0
        cfg.heartbeat_seconds = 0
        cfg.size = MemoryLayout<msse_config>.offset(of: \msse_config.jwt_secret)!
        // What follows an older caller's struct is not its memory: garbage must not be read.
        let server = try "too short".withCString { garbage in
            cfg.jwt_secret = garbage
            cfg.public_channel_count = 99
            return try start(&cfg)
        }
        defer { msse_server_destroy(server) }
        #expect(try status(server, "/events/anything") == 200)
    }
}
