// msse_version, msse_strerror, msse_config_init and the msse_server_* lifecycle.
public import CMicroSSE
import MicroSSE
import MicroSSEMercure
import MicroSSERedis

#if canImport(Glibc)
    import Glibc
#endif

// MARK: Version and result codes

/// `MSSE_VERSION` as a C string that lives as long as the process (sqlite3_libversion's way).
/// `nonisolated(unsafe)`: written once by Swift's thread-safe lazy global initialisation, then
/// only read.
nonisolated(unsafe) private let versionCString = UnsafePointer(duplicate(MSSE_VERSION))

@c @implementation
public func msse_version() -> UnsafePointer<CChar>! {
    versionCString
}

@c @implementation
public func msse_version_number() -> Int32 {
    MSSE_VERSION_NUMBER
}

@c @implementation
public func msse_strerror(_ code: Int32) -> UnsafePointer<CChar>! {
    switch code {
    case MSSE_OK: staticCString("not an error")
    case MSSE_EINVAL: staticCString("invalid argument")
    case MSSE_ECHANNEL: staticCString("invalid channel name")
    case MSSE_EID: staticCString("invalid event id (CR, LF or NUL)")
    case MSSE_EEVENT: staticCString("invalid or reserved event name")
    case MSSE_EUTF8: staticCString("invalid UTF-8")
    case MSSE_ETOOBIG: staticCString("payload too large")
    case MSSE_ESTATE: staticCString("invalid state for this call")
    case MSSE_ESTART: staticCString("server could not start")
    case MSSE_ENOTFOUND: staticCString("not found")
    case MSSE_EUNAVAIL: staticCString("unavailable: the server is stopping or stopped, or Redis cannot be reached")
    case MSSE_ECLOSED: staticCString("client stream is closed")
    case MSSE_ESPACE: staticCString("output buffer too small")
    case MSSE_EINTERNAL: staticCString("internal error")
    default: staticCString("unknown error")
    }
}

// MARK: Configuration

/// The end of the first published `msse_config` layout: a caller's `size` must reach it.
private let configSizeV1 = MemoryLayout<msse_config>.offset(of: \msse_config.shutdown_drain_ms)! + 4

/// The defaults, derived from the Swift API's so that both stay the same.
private func defaultConfig() -> msse_config {
    let d = ServerConfiguration()
    var c = msse_config()
    c.size = MemoryLayout<msse_config>.size
    c.host = staticCString("127.0.0.1")
    c.port = d.port
    c.heartbeat_seconds = Int32(clamping: d.heartbeatSeconds)
    c.retry_ms = Int32(clamping: d.retryMilliseconds ?? -1)
    c.history_count = Int32(clamping: d.historyCount)
    c.history_bytes = d.historyBytes
    c.max_clients = Int32(clamping: d.maxClients)
    c.client_buffer_bytes = d.clientBufferBytes
    c.max_publish_bytes = d.maxPublishBytes
    c.publishing = d.publishing ? 1 : 0
    c.publish_token = nil
    c.cors_origins = nil
    c.cors_origin_count = 0
    c.channel_routes = d.channelRoutes ? 1 : 0
    c.status_routes = d.statusRoutes ? 1 : 0
    c.write_timeout_seconds = Int32(clamping: d.writeTimeoutSeconds)
    c.connection_timeout_seconds = Int32(clamping: d.connectionTimeoutSeconds)
    c.connection_limit = Int32(clamping: d.connectionLimit)
    c.per_ip_connection_limit = Int32(clamping: d.perIPConnectionLimit)
    c.connection_memory_limit = d.connectionMemoryLimit
    c.thread_pool_size = Int32(clamping: d.threadPoolSize)
    c.tls_cert_pem = nil
    c.tls_key_pem = nil
    c.shutdown_drain_ms = Int32(clamping: d.shutdownDrainMilliseconds)
    c.redis_url = nil
    c.jwt_secret = nil
    c.jwt_public_key_pem = nil
    c.public_channels = nil
    c.public_channel_count = 0
    c.history_memory_bytes = d.historyMemoryBytes
    c.history_ttl_seconds = Int32(clamping: d.historyTTLSeconds)
    c.max_channels_per_stream = Int32(clamping: d.maxChannelsPerStream)
    c.max_upload_bytes_in_flight = d.maxUploadBytesInFlight
    c.drain_window_ms = Int32(clamping: d.drainWindowMilliseconds)
    c.allowed_hosts = nil
    c.allowed_host_count = 0
    return c
}

@c @implementation
public func msse_config_init(_ cfg: UnsafeMutablePointer<msse_config>!) {
    guard let cfg else { return }
    cfg.pointee = defaultConfig()
}

/// Reads a caller's config: only its first `size` bytes (it may be an older, shorter layout,
/// whose missing fields keep their defaults), and a newer, longer layout only when every field
/// this library does not know is zero.
private func readConfig(_ p: UnsafePointer<msse_config>) throws(CFailure) -> msse_config {
    let raw = UnsafeRawPointer(p)
    let size = raw.loadUnaligned(as: Int.self)
    let known = MemoryLayout<msse_config>.size
    guard size >= configSizeV1 else {
        throw CFailure(MSSE_EINVAL, "msse_config.size is \(size): initialize the config with msse_config_init")
    }
    if size > known {
        let tail = UnsafeRawBufferPointer(start: raw + known, count: size - known)
        guard tail.allSatisfy({ $0 == 0 }) else {
            throw CFailure(MSSE_EINVAL, "msse_config sets fields this library (\(MSSE_VERSION)) does not know")
        }
    }
    var c = defaultConfig()
    withUnsafeMutableBytes(of: &c) { $0.baseAddress!.copyMemory(from: raw, byteCount: min(size, known)) }
    return c
}

/// A C `int` as a Swift `Int` (ranges are checked by `ServerConfiguration.validate()`).
private func count(_ value: Int32) -> Int { Int(value) }

/// A C `size_t` as a Swift `Int`: it imports as `Int`, so a value above `Int.max` arrives
/// negative, which `ServerConfiguration.validate()` refuses.
private func size(_ value: Int) -> Int { value }

/// Turns a C config into the Swift one: conversions only; `validate()` checks the ranges.
private func configuration(_ p: UnsafePointer<msse_config>) throws(CFailure) -> ServerConfiguration {
    let c = try readConfig(p)
    var s = ServerConfiguration()
    s.host = try string(c.host, "msse_config.host")
    s.port = c.port
    s.heartbeatSeconds = count(c.heartbeat_seconds)
    s.retryMilliseconds = c.retry_ms == -1 ? nil : count(c.retry_ms)
    s.historyCount = count(c.history_count)
    s.historyBytes = size(c.history_bytes)
    s.maxClients = count(c.max_clients)
    s.clientBufferBytes = size(c.client_buffer_bytes)
    s.maxPublishBytes = size(c.max_publish_bytes)
    s.publishing = c.publishing != 0
    s.publishToken = try optionalString(c.publish_token, "msse_config.publish_token")
    s.statsToken = try optionalString(c.stats_token, "msse_config.stats_token")
    s.corsOrigins = try strings(c.cors_origins, c.cors_origin_count, "cors_origins", "cors_origin_count")
    s.channelRoutes = c.channel_routes != 0
    s.statusRoutes = c.status_routes != 0
    s.writeTimeoutSeconds = count(c.write_timeout_seconds)
    s.connectionTimeoutSeconds = count(c.connection_timeout_seconds)
    s.connectionLimit = count(c.connection_limit)
    s.perIPConnectionLimit = count(c.per_ip_connection_limit)
    s.connectionMemoryLimit = size(c.connection_memory_limit)
    s.threadPoolSize = count(c.thread_pool_size)
    let cert = try optionalString(c.tls_cert_pem, "msse_config.tls_cert_pem")
    let key = try optionalString(c.tls_key_pem, "msse_config.tls_key_pem")
    switch (cert, key) {
    case (nil, nil): s.tls = nil
    case (let cert?, let key?): s.tls = .init(certificatePEM: cert, privateKeyPEM: key)
    default: throw CFailure(MSSE_EINVAL, "set both msse_config.tls_cert_pem and tls_key_pem, or neither")
    }
    s.shutdownDrainMilliseconds = count(c.shutdown_drain_ms)
    if let urls = try optionalString(c.redis_url, "msse_config.redis_url") {
        // Several deployments (shards) separated by spaces; the rules are validate()'s.
        do throws(MicroSSEError) {
            s.redisShards = try urls.split(whereSeparator: { $0 == " " }).map { (url) throws(MicroSSEError) in
                try RedisURL(String(url))
            }
        } catch {
            throw CFailure(MSSE_EINVAL, "msse_config.redis_url: \(error.message)")
        }
        if s.redisShards.isEmpty { throw CFailure(MSSE_EINVAL, "msse_config.redis_url: no URL in it") }
    }
    let secret = try optionalString(c.jwt_secret, "msse_config.jwt_secret")
    let pem = try optionalString(c.jwt_public_key_pem, "msse_config.jwt_public_key_pem")
    switch (secret, pem) {
    case (nil, nil): s.jwt = nil
    case (let secret?, nil): s.jwt = JWTSettings(secret: secret)
    case (nil, let pem?): s.jwt = JWTSettings(publicKeyPEM: pem)
    default: throw CFailure(MSSE_EINVAL, "set msse_config.jwt_secret or jwt_public_key_pem, not both")
    }
    s.publicChannels = try strings(
        c.public_channels, c.public_channel_count, "public_channels", "public_channel_count")
    s.historyMemoryBytes = size(c.history_memory_bytes)
    s.historyTTLSeconds = count(c.history_ttl_seconds)
    s.maxChannelsPerStream = count(c.max_channels_per_stream)
    s.maxUploadBytesInFlight = size(c.max_upload_bytes_in_flight)
    s.drainWindowMilliseconds = count(c.drain_window_ms)
    s.allowedHosts = try strings(c.allowed_hosts, c.allowed_host_count, "allowed_hosts", "allowed_host_count")
    s.mercure = MercureSettings(
        enabled: c.mercure != 0, legacy: c.mercure_legacy != 0, subscriptions: c.mercure_subscriptions != 0,
        issuers: try strings(c.mercure_issuers, c.mercure_issuer_count, "mercure_issuers", "mercure_issuer_count"),
        audience: try optionalString(c.mercure_audience, "msse_config.mercure_audience"))
    return s
}

/// A C array of `count` strings (`msse_config.LIST`, counted by `msse_config.COUNT`), copied.
private func strings(
    _ list: UnsafePointer<UnsafePointer<CChar>?>?, _ count: Int, _ name: String, _ countName: String
) throws(CFailure) -> [String] {
    guard count >= 0 else { throw CFailure(MSSE_EINVAL, "msse_config.\(countName) is too large") }
    guard count > 0 else { return [] }
    guard let list else { throw CFailure(MSSE_EINVAL, "msse_config.\(name) is NULL but \(countName) is \(count)") }
    var out: [String] = []
    for i in 0..<count { out.append(try string(list[i], "msse_config.\(name)[\(i)]")) }
    return out
}

// MARK: Lifecycle

@c @implementation
public func msse_server_create(
    _ cfg: UnsafePointer<msse_config>!, _ out: UnsafeMutablePointer<OpaquePointer?>!
) -> Int32 {
    guard let out else { return MSSE_EINVAL }
    out.pointee = nil
    guard let cfg else { return MSSE_EINVAL }
    do throws(CFailure) {
        let config = try configuration(cfg)
        do throws(MicroSSEError) {
            try config.validate()
        } catch {
            throw CFailure(error)
        }
        out.pointee = CServer(server: Server(configuration: config)).retainedOpaque
        return MSSE_OK
    } catch {
        // Like sqlite3_open: a handle that only tells why (msse_server_errmsg), to destroy.
        let failed = CServer(server: Server(), createFailure: error)
        out.pointee = failed.retainedOpaque
        return error.code
    }
}

@c @implementation
public func msse_server_start(_ srv: OpaquePointer!) -> Int32 {
    guard let s = CServer.from(srv) else { return MSSE_EINVAL }
    if let failure = s.createFailure {
        return s.fail(CFailure(MSSE_ESTATE, "msse_server_create failed: \(failure.message)"))
    }
    do throws(MicroSSEError) {
        try s.server.start()
        return MSSE_OK
    } catch {
        return s.fail(CFailure(error))
    }
}

@c @implementation
public func msse_server_port(_ srv: OpaquePointer!) -> UInt16 {
    CServer.from(srv)?.server.port ?? 0
}

@c @implementation
public func msse_server_stop(_ srv: OpaquePointer!) -> Int32 {
    guard let s = CServer.from(srv) else { return MSSE_EINVAL }
    s.server.stop()
    return MSSE_OK
}

@c @implementation
public func msse_server_destroy(_ srv: OpaquePointer!) {
    guard let srv else { return }
    let unmanaged = Unmanaged<CServer>.fromOpaque(UnsafeRawPointer(srv))
    let s = unmanaged.takeUnretainedValue()
    guard Server.onCallbackThread else {
        s.tearDown()
        unmanaged.release()
        return
    }
    // From a callback: the stop would join the calling thread, so the rest (the stop, the
    // free_fns, the release) runs on a thread of its own once this callback has returned.
    Server.detach {
        s.tearDown()
        Unmanaged.passUnretained(s).release()
    }
}

@c @implementation
public func msse_server_errmsg(_ srv: OpaquePointer!) -> UnsafePointer<CChar>! {
    guard let s = CServer.from(srv) else { return staticCString("msse_server is NULL") }
    return s.lastError() ?? staticCString("not an error")
}

@c @implementation
public func msse_server_stats(_ srv: OpaquePointer!, _ stats: UnsafeMutablePointer<msse_stats>!) -> Int32 {
    guard let s = CServer.from(srv), let stats else { return MSSE_EINVAL }
    let raw = UnsafeMutableRawPointer(stats)
    let size = raw.loadUnaligned(as: Int.self)
    let first = MemoryLayout<msse_stats>.offset(of: \msse_stats.clients)! + MemoryLayout<UInt64>.size
    guard size >= first else {
        return s.fail(CFailure(MSSE_EINVAL, "msse_stats.size is \(size): set it to sizeof(msse_stats)"))
    }
    let st = s.server.statistics
    var out = msse_stats()
    out.size = size
    out.clients = UInt64(clamping: st.clients)
    out.channels = UInt64(clamping: st.channels)
    out.published = UInt64(clamping: st.published)
    out.delivered = UInt64(clamping: st.delivered)
    out.bytes = UInt64(clamping: st.bytes)
    out.drops = UInt64(clamping: st.drops)
    out.disconnects = UInt64(clamping: st.disconnects)
    withUnsafeBytes(of: &out) { raw.copyMemory(from: $0.baseAddress!, byteCount: min(size, $0.count)) }
    return MSSE_OK
}
