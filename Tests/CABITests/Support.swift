import CMicroSSE
import MicroSSECABI
import Testing

/// The defaults, on an ephemeral port, without heartbeats.
func testConfig() -> msse_config {
    var cfg = msse_config()
    msse_config_init(&cfg)
    cfg.port = 0
    cfg.heartbeat_seconds = 0
    return cfg
}

/// Creates and starts a server from `cfg`; fails the test with the server's reason otherwise.
func startServer(_ cfg: inout msse_config) throws -> OpaquePointer {
    var srv: OpaquePointer?
    let rc = msse_server_create(&cfg, &srv)
    try #require(rc == MSSE_OK, "msse_server_create: \(rc) \(String(cString: msse_server_errmsg(srv)))")
    let server = try #require(srv)
    try #require(msse_server_start(server) == MSSE_OK)
    return server
}

/// The reason `msse_server_create` gives for a default config changed by `configure`, when it
/// refuses it with MSSE_EINVAL; nil when it does not.
func createFailure(_ configure: (inout msse_config) -> Void) -> String? {
    var c = msse_config()
    msse_config_init(&c)
    configure(&c)
    var srv: OpaquePointer?
    defer { msse_server_destroy(srv) }
    guard msse_server_create(&c, &srv) == MSSE_EINVAL else { return nil }
    return String(cString: msse_server_errmsg(srv))
}
