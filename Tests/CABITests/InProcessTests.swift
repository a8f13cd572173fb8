// The C ABI called in-process, as a C program would: callbacks through C function pointers with
// user data, routes, stream routes, client handles, statistics and per-thread error messages.
import CMicroSSE
import Foundation
import MicroSSE
import MicroSSECABI
import MicroSSETestSupport
import Synchronization
import Testing

/// What the C callbacks below record; passed to them as `user_data`.
private final class Recorder: Sendable {
    let log = Mutex<[String]>([])
    /// Retained client handles, as addresses (OpaquePointer is not Sendable).
    let clients = Mutex<[UInt]>([])
    let freed = Atomic<Int>(0)

    func add(_ s: String) { log.withLock { $0.append(s) } }
    var entries: [String] { log.withLock { $0 } }
    var pointer: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
    static func from(_ p: UnsafeMutableRawPointer?) -> Recorder { Unmanaged.fromOpaque(p!).takeUnretainedValue() }
}

private func cString(_ p: UnsafePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "<NULL>" }

/// Creates and starts a server on an ephemeral port with `configure` applied to the config.
private func startServer(_ configure: (inout msse_config) -> Void = { _ in }) throws -> OpaquePointer {
    var cfg = msse_config()
    msse_config_init(&cfg)
    cfg.port = 0
    cfg.heartbeat_seconds = 0
    configure(&cfg)
    var srv: OpaquePointer?
    try #require(msse_server_create(&cfg, &srv) == MSSE_OK)
    let server = try #require(srv)
    return server
}

/// A server handle for another thread. `@unchecked Sendable`: msse_publish and
/// msse_server_errmsg are documented as callable from any thread.
private struct ServerBox: @unchecked Sendable {
    let pointer: OpaquePointer
}

// The C callbacks (C function pointers: no captures; state comes through user_data).

private let freeRecorder: msse_free_fn = { Recorder.from($0).freed.add(1, ordering: .relaxed) }

private let authorize: msse_authorize_cb = { ud, req, access, names, count in
    let list = (0..<count).map { cString(names![$0]) }
    Recorder.from(ud).add("auth \(access) \(list) \(cString(msse_request_path(req)))")
    if list.contains("secret") { return 403 }
    if cString(msse_request_header(req, "authorization")) == "Bearer bad" { return 401 }
    return list.contains("weird") ? 7 : 0
}

private let echoRoute: msse_route_cb = { ud, req, res in
    var len = 0
    let body = msse_request_body(req, &len)
    let text = String(decoding: UnsafeRawBufferPointer(start: body, count: len), as: UTF8.self)
    let r = Recorder.from(ud)
    r.add(
        "echo \(cString(msse_request_method(req))) q=\(cString(msse_request_query(req, "q")))"
            + " from \(cString(msse_request_remote_address(req)))")
    _ = msse_response_set_status(res, 201)
    _ = msse_response_add_header(res, "Content-Type", "text/plain")
    r.add("bad header \(msse_response_add_header(res, "X-Bad", "a\r\nInjected: 1"))")
    let reply = "got " + text
    _ = msse_response_set_body(res, reply, reply.utf8.count)
}

private let privateStream: msse_stream_cb = { ud, req, client in
    let r = Recorder.from(ud)
    r.add("stream \(cString(msse_request_path(req))) \(cString(msse_client_path(client)))")
    let retained = UInt(bitPattern: UnsafeRawPointer(msse_client_retain(client)))
    r.clients.withLock { $0.append(retained) }
    let codes = [
        msse_client_send(client, "hello", "1", "just you", 8),
        msse_client_send(client, "a\nb", nil, "x", 1),
        msse_client_send(client, nil, "1\r", "x", 1),
        msse_client_send(client, nil, nil, "\u{ff}", 1),
        msse_client_send(client, "microsse.expired", nil, "{}", 2),
    ]
    r.add("send codes \(codes)")
}

private let recordConnect: msse_client_cb = { ud, client in
    Recorder.from(ud).add("connect \(msse_client_id(client))")
}

private let recordDisconnect: msse_client_cb = { ud, client in
    Recorder.from(ud).add("disconnect \(msse_client_id(client))")
}

@Suite struct InProcessTests {
    @Test("msse_config_init gives the Swift API's defaults")
    func configDefaults() {
        var c = msse_config()
        msse_config_init(&c)
        let d = ServerConfiguration()
        #expect(c.size == MemoryLayout<msse_config>.size)
        #expect(String(cString: c.host) == d.host)
        #expect(c.port == d.port)
        #expect(Int(c.heartbeat_seconds) == d.heartbeatSeconds)
        #expect(c.retry_ms == -1 && d.retryMilliseconds == nil)
        #expect(Int(c.history_count) == d.historyCount && c.history_bytes == d.historyBytes)
        #expect(Int(c.max_clients) == d.maxClients && c.client_buffer_bytes == d.clientBufferBytes)
        #expect(c.max_publish_bytes == d.maxPublishBytes && (c.publishing != 0) == d.publishing)
        #expect(c.publish_token == nil && c.cors_origin_count == 0 && c.tls_cert_pem == nil)
        #expect((c.channel_routes != 0) == d.channelRoutes && (c.status_routes != 0) == d.statusRoutes)
        #expect(Int(c.thread_pool_size) == d.threadPoolSize && Int(c.shutdown_drain_ms) == d.shutdownDrainMilliseconds)
        #expect(String(cString: msse_version()) == MSSE_VERSION && msse_version_number() == MSSE_VERSION_NUMBER)
    }

    @Test("a config from a newer header is accepted only when its unknown fields are zero")
    func configGrowth() throws {
        let known = MemoryLayout<msse_config>.size
        let raw = UnsafeMutableRawPointer.allocate(byteCount: known + 16, alignment: 16)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: known + 16)
        let cfg = raw.bindMemory(to: msse_config.self, capacity: 1)
        msse_config_init(cfg)
        cfg.pointee.size = known + 16
        var srv: OpaquePointer?
        #expect(msse_server_create(cfg, &srv) == MSSE_OK)
        msse_server_destroy(srv)
        raw.storeBytes(of: 1, toByteOffset: known + 8, as: UInt8.self)
        #expect(msse_server_create(cfg, &srv) == MSSE_EINVAL)
        #expect(String(cString: msse_server_errmsg(srv)).contains("does not know"))
        #expect(msse_server_start(srv) == MSSE_ESTATE)
        msse_server_destroy(srv)
    }

    @Test("authorizer, plain route with request accessors, free functions at destroy")
    func authorizerAndRoutes() throws {
        let rec = Recorder()
        let srv = try startServer()
        // Destroyed once, at the end, where the free functions' calls are checked.
        #expect(msse_server_set_authorizer(srv, authorize, rec.pointer, freeRecorder) == MSSE_OK)
        #expect(msse_server_add_route(srv, "POST", "/echo", echoRoute, rec.pointer, freeRecorder) == MSSE_OK)
        #expect(msse_server_start(srv) == MSSE_OK)
        let port = msse_server_port(srv)

        let echo = try httpRequest(port: port, method: "POST", path: "/echo?q=hi%20there", body: Array("ping".utf8))
        #expect(echo.status == 201 && echo.text == "got ping" && echo.header("X-Bad") == nil)
        #expect(echo.header("Content-Type") == "text/plain")
        #expect(try httpRequest(port: port, path: "/events/secret").status == 403)
        #expect(try httpRequest(port: port, path: "/events/weird").status == 403)  // invalid answer: refused
        #expect(
            try httpRequest(port: port, path: "/events/x", headers: [("Authorization", "Bearer bad")]).status == 401)
        let ok = try EventStreamClient(port: port, path: "/events?channel=a&channel=b")
        #expect(ok.status == 200)
        ok.close()
        let log = rec.entries
        #expect(log.contains("auth \(MSSE_ACCESS_ROUTE) [\"/echo\"] /echo"))
        #expect(log.contains("echo POST q=hi there from 127.0.0.1"))
        #expect(log.contains("auth \(MSSE_ACCESS_SUBSCRIBE) [\"secret\"] /events/secret"))
        #expect(log.contains("auth \(MSSE_ACCESS_SUBSCRIBE) [\"a\", \"b\"] /events"))
        #expect(log.contains("bad header \(MSSE_EINVAL)"))
        #expect(rec.freed.load(ordering: .relaxed) == 0)
        msse_server_destroy(srv)
        #expect(rec.freed.load(ordering: .relaxed) == 2)
    }

    @Test("stream route: private events to a client handle, connect/disconnect, retain/release")
    func streamRouteAndClientHandles() throws {
        let rec = Recorder()
        let srv = try startServer()
        defer { msse_server_destroy(srv) }
        #expect(msse_server_add_stream_route(srv, "/private", privateStream, rec.pointer, nil) == MSSE_OK)
        #expect(msse_server_on_connect(srv, recordConnect, rec.pointer, nil) == MSSE_OK)
        #expect(msse_server_on_disconnect(srv, recordDisconnect, rec.pointer, nil) == MSSE_OK)
        #expect(msse_server_start(srv) == MSSE_OK)
        let port = msse_server_port(srv)

        let stream = try EventStreamClient(port: port, path: "/private")
        let first = try #require(try stream.next())
        #expect(first.type == "hello" && first.data == "just you" && first.id == "1")
        let address = try #require(rec.clients.withLock { $0.first })
        let handle = OpaquePointer(bitPattern: address)
        let id = msse_client_id(handle)
        #expect(id != 0 && msse_client_is_open(handle) == 1)
        var ev = msse_event()
        msse_event_init(&ev)
        ev.retry_ms = 2500
        ev.data = UnsafePointer(strdup("line 1\nline 2"))
        ev.len = 13
        #expect(msse_client_send_event(handle, &ev) == MSSE_OK)
        free(UnsafeMutablePointer(mutating: ev.data))
        #expect(msse_client_send_comment(handle, "keep going") == MSSE_OK)
        let second = try #require(try stream.next())
        #expect(second.data == "line 1\nline 2")
        #expect(try stream.waitForComments(2) && stream.comments.contains("keep going"))  // after the opening comment
        #expect(String(decoding: stream.body, as: UTF8.self).contains("retry: 2500\n"))

        #expect(msse_client_close(handle) == MSSE_OK)
        #expect(try stream.waitForEnd())
        #expect(eventually { rec.entries.contains("disconnect \(id)") })
        // The handle we retained outlives the stream: sending is refused, nothing crashes.
        #expect(msse_client_is_open(handle) == 0)
        #expect(msse_client_send(handle, nil, nil, "late", 4) == MSSE_ECLOSED)
        msse_client_release(handle)
        #expect(rec.entries.contains("stream /private /private") && rec.entries.contains("connect \(id)"))
        #expect(rec.entries.contains("send codes \([MSSE_OK, MSSE_EEVENT, MSSE_EID, MSSE_EUTF8, MSSE_EEVENT])"))

        var stats = msse_stats()
        stats.size = MemoryLayout<msse_stats>.size
        #expect(msse_server_stats(srv, &stats) == MSSE_OK)
        #expect(stats.disconnects >= 1 && stats.size == MemoryLayout<msse_stats>.size)
    }

    @Test("msse_server_errmsg is per calling thread; publish codes match the Swift errors")
    func errorMessagesPerThread() throws {
        let srv = try startServer()
        defer { msse_server_destroy(srv) }
        #expect(String(cString: msse_server_errmsg(srv)) == "not an error")
        #expect(msse_publish(srv, "bad channel", nil, nil, "x", 1) == MSSE_ECHANNEL)
        let mine = String(cString: msse_server_errmsg(srv))
        #expect(mine.contains("channel"))
        let box = ServerBox(pointer: srv)
        let other = Thread {
            #expect(msse_publish(box.pointer, "ok", nil, "a\nb", "x", 1) == MSSE_EID)
            #expect(String(cString: msse_server_errmsg(box.pointer)).contains("LF"))
        }
        other.start()
        #expect(eventually { other.isFinished })
        #expect(String(cString: msse_server_errmsg(srv)) == mine)
        #expect(msse_publish(srv, "ok", nil, nil, "fine", 4) == MSSE_OK)
        #expect(String(cString: msse_server_errmsg(srv)) == mine)  // success leaves it
        var id = [CChar](repeating: 0, count: 32)
        var ev = msse_event()
        msse_event_init(&ev)
        #expect(msse_publish_event(srv, "ok", &ev, &id, id.count) == MSSE_OK)
        #expect(id.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }.hasPrefix("~1."))  // an assigned id
        #expect(msse_publish(srv, "ok", "microsse.gap", nil, "x", 1) == MSSE_EEVENT)
        #expect(String(cString: msse_server_errmsg(srv)).contains("reserved"))
    }

    @Test("route paths, statuses and private sends: the Swift API's rules and reasons, as C codes")
    func argumentRulesAreSwifts() throws {
        let rec = Recorder()
        let srv = try startServer { $0.max_publish_bytes = 4 }
        #expect(msse_server_add_route(srv, "GET", "talk", echoRoute, rec.pointer, freeRecorder) == MSSE_EINVAL)
        #expect(String(cString: msse_server_errmsg(srv)) == "route path must start with '/': \"talk\"")
        #expect(msse_server_add_stream_route(srv, "x", privateStream, rec.pointer, freeRecorder) == MSSE_EINVAL)
        #expect(String(cString: msse_server_errmsg(srv)) == "route path must start with '/': \"x\"")
        #expect(msse_server_add_static_route(srv, "GET", "/s", 42, nil, nil, 0) == MSSE_EINVAL)
        #expect(String(cString: msse_server_errmsg(srv)) == "status must be 100-599 (got 42)")
        #expect(msse_server_add_stream_route(srv, "/p", sizedStream, rec.pointer, nil) == MSSE_OK)
        #expect(msse_server_start(srv) == MSSE_OK)
        let stream = try EventStreamClient(port: msse_server_port(srv), path: "/p")
        #expect(try stream.next()?.data == "1234")
        #expect(rec.entries.contains("sized codes \([MSSE_ETOOBIG, MSSE_OK])"))
        stream.close()
        msse_server_destroy(srv)
        // The refused routes kept no free function: nothing is freed at destroy.
        #expect(rec.freed.load(ordering: .relaxed) == 0)
    }
}

private let sizedStream: msse_stream_cb = { ud, _, client in
    let codes = [msse_client_send(client, nil, nil, "12345", 5), msse_client_send(client, nil, nil, "1234", 4)]
    Recorder.from(ud).add("sized codes \(codes)")
}
