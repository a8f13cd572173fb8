import CMicroSSE
import MicroSSECABI
import MicroSSETestSupport
import Testing

/// `msse_config.stats_token` keeps /stats and /metrics to its holders; `msse_publish` refuses the
/// event names EventSource handles itself.
@Suite("C ABI: stats_token and reserved event names")
struct SurfaceConfigTests {
    private func status(_ server: OpaquePointer, _ path: String, token: String? = nil) throws -> Int {
        let headers = token.map { [("Authorization", "Bearer \($0)")] } ?? []
        return try httpRequest(port: msse_server_port(server), path: path, headers: headers).status
    }

    @Test("stats_token: 401 without it, 200 with it; NULL (the default) and an older layout: public")
    func statsToken() throws {
        var initialized = msse_config()
        msse_config_init(&initialized)
        #expect(initialized.stats_token == nil)

        var cfg = testConfig()
        let server = try "c-stats".withCString { token in
            cfg.stats_token = token
            return try startServer(&cfg)  // copied by msse_server_create
        }
        defer { msse_server_destroy(server) }
        #expect(try status(server, "/stats") == 401)
        #expect(try status(server, "/metrics", token: "c-stat") == 401)
        #expect(try status(server, "/stats", token: "c-stats") == 200)
        #expect(try status(server, "/metrics", token: "c-stats") == 200)
        #expect(try status(server, "/healthz") == 200)

        var open = testConfig()
        let publicServer = try startServer(&open)
        defer { msse_server_destroy(publicServer) }
        #expect(try status(publicServer, "/stats") == 200)

        // A caller compiled before stats_token: past its struct is not its memory.
        var older = testConfig()
        older.size = MemoryLayout<msse_config>.offset(of: \msse_config.stats_token)!
        let olderServer = try "ignored".withCString { token in
            older.stats_token = token
            return try startServer(&older)
        }
        defer { msse_server_destroy(olderServer) }
        #expect(try status(olderServer, "/stats") == 200)

        let spaced = "a b".withCString { token in createFailure { $0.stats_token = token } }
        #expect(spaced?.contains("statsToken") == true)
    }

    @Test("msse_publish refuses event names error and open with MSSE_EEVENT; message is fine")
    func reservedNames() throws {
        var cfg = testConfig()
        let srv = try startServer(&cfg)
        defer { msse_server_destroy(srv) }
        for name in ["error", "open"] {
            #expect(msse_publish(srv, "c", name, nil, "x", 1) == MSSE_EEVENT, "\(name)")
            #expect(String(cString: msse_server_errmsg(srv)).contains("event name \(name) is reserved"))
            #expect(String(cString: msse_strerror(MSSE_EEVENT)).contains("reserved"))
        }
        #expect(msse_publish(srv, "c", "message", nil, "x", 1) == MSSE_OK)
        #expect(msse_publish(srv, "c", "opened", nil, "x", 1) == MSSE_OK)
    }
}
