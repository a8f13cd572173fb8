import CMicroSSE
import MicroSSECABI
import MicroSSETestSupport
import Testing

/// The limits added to `msse_config` after the JWT fields: what a C host sets reaches the server.
@Suite("C ABI: msse_config limit fields")
struct LimitsConfigTests {
    /// The status line's code of a stream request naming `host` (the head only: a stream never ends).
    private func status(_ server: OpaquePointer, _ path: String, host: String = "127.0.0.1") throws -> Int {
        let c = try RawConnection(port: msse_server_port(server))
        defer { c.close() }
        try c.send("GET \(path) HTTP/1.1\r\nHost: \(host)\r\nAccept: text/event-stream\r\n\r\n")
        return try c.readHead().status
    }

    @Test("the defaults are the Swift API's")
    func defaults() {
        var cfg = msse_config()
        msse_config_init(&cfg)
        #expect(cfg.history_memory_bytes == 256 << 20)
        #expect(cfg.history_ttl_seconds == 0 && cfg.max_channels_per_stream == 32)
        #expect(cfg.max_upload_bytes_in_flight == 64 << 20 && cfg.drain_window_ms == 5_000)
        #expect(cfg.allowed_hosts == nil && cfg.allowed_host_count == 0)
    }

    @Test("max_channels_per_stream and allowed_hosts are enforced over HTTP")
    func enforced() throws {
        var cfg = testConfig()
        cfg.max_channels_per_stream = 2
        let server = try "hub.example".withCString { host in
            let hosts: [UnsafePointer<CChar>?] = [host]
            return try hosts.withUnsafeBufferPointer { list in
                cfg.allowed_hosts = list.baseAddress
                cfg.allowed_host_count = 1
                return try startServer(&cfg)  // copied by msse_server_create
            }
        }
        defer { msse_server_destroy(server) }
        #expect(try status(server, "/events?channel=a&channel=b", host: "hub.example") == 200)
        #expect(try status(server, "/events?channel=a&channel=b&channel=c", host: "hub.example") == 400)
        #expect(try status(server, "/events/a", host: "evil.example") == 421)
    }

    @Test("bad values are MSSE_EINVAL with a reason; an older layout gets the defaults")
    func errorsAndOlderLayout() throws {
        #expect(createFailure { $0.max_channels_per_stream = 0 }?.contains("maxChannelsPerStream") == true)
        #expect(createFailure { $0.history_ttl_seconds = -1 }?.contains("historyTTLSeconds") == true)
        #expect(createFailure { $0.allowed_host_count = 1 }?.contains("allowed_hosts is NULL") == true)
        let spaced = "a b".withCString { h in
            [h].withUnsafeBufferPointer { list in
                createFailure {
                    $0.allowed_hosts = UnsafePointer(OpaquePointer(list.baseAddress))
                    $0.allowed_host_count = 1
                }
            }
        }
        #expect(spaced?.contains("allowedHosts") == true)

        var cfg = testConfig()
        cfg.size = MemoryLayout<msse_config>.offset(of: \msse_config.history_memory_bytes)!
        // Past an older caller's struct is not its memory: what is there must not be read.
        cfg.max_channels_per_stream = 1
        cfg.allowed_host_count = 7
        let server = try startServer(&cfg)
        defer { msse_server_destroy(server) }
        #expect(try status(server, "/events?channel=a&channel=b") == 200)
    }
}
