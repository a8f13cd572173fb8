internal import CMHDShim
internal import CMicroHTTPD
import MicroSSECore
import MicroSSEWire

/// Per-request state in `con_cls`: the request's head, then its body as it arrives. Only
/// touched on the connection's own libmicrohttpd thread, one call at a time, hence
/// `@unchecked Sendable`.
private final class RequestContext: @unchecked Sendable {
    var upload: UploadState
    var head: Request?
    /// A reply the layer above gives later, and the method of its request, while the connection
    /// is suspended waiting for it.
    var deferred: (reply: DeferredReply, method: String)?
    /// The deferred reply in the transport's pending table: until its response is sent (the
    /// request completes), or until its stream is registered.
    var parked: DeferredReply?

    init(limit: Int) {
        upload = UploadState(limit: limit)
    }
}

/// libmicrohttpd's access handler: called when the headers are in, per piece of body, and once
/// more when the body is complete. On the first call the head is checked (framing, size, then
/// the layer above's ``TransportDelegate/admit(_:)``) before any body byte is stored; the
/// request goes to the layer above only when its body is complete.
let accessHandler: MHD_AccessHandlerCallback = {
    cls, connection, url, method, version, uploadData, uploadDataSize, conCls in
    guard let cls, let connection, let conCls, let uploadDataSize else { return .NO }
    let transport = Unmanaged<HTTPTransport>.fromOpaque(cls).takeUnretainedValue()
    // The shim's URI-log callback leaves nil, or a marker: a query too large (emptied), or an
    // encoded NUL in the path.
    guard let raw = conCls.pointee, !isURIMarker(raw) else {
        let context = RequestContext(limit: transport.options.maxBodyBytes)
        let marker = conCls.pointee
        conCls.pointee = Unmanaged.passRetained(context).toOpaque()
        let call = FirstCall(
            connection: connection, url: url, method: method, version: version,
            queryTooLarge: marker == UnsafeMutableRawPointer(mutating: msse_shim_query_too_large_marker()),
            pathHasNUL: marker == UnsafeMutableRawPointer(mutating: msse_shim_path_nul_marker()))
        return headersArrived(call, context, transport)
    }
    let context = Unmanaged<RequestContext>.fromOpaque(raw).takeUnretainedValue()
    if let (deferred, method) = context.deferred {
        // Called again after the completion resumed the connection.
        context.deferred = nil
        let reply = deferred.take() ?? .response(.text("the deferred reply was lost", status: 500))
        return sendDeferred(reply, method: method, context, on: connection, transport)
    }
    let budget = transport.options.uploadBudget
    if uploadDataSize.pointee > 0 {
        let bytes = UnsafeRawBufferPointer(start: uploadData, count: uploadDataSize.pointee)
        uploadDataSize.pointee = 0
        return perform(context.upload.receive(bytes, reserve: budget.reserve), transport, connection)
    }
    let action = context.upload.end()
    guard action == .dispatch, let head = context.head else { return perform(action, transport, connection) }
    msse_shim_request_arrived(connection)
    let request = head.with(body: context.upload.takeBody())
    context.head = nil
    let reply = transport.reply(to: request)
    guard case .deferred(let deferred) = reply else {
        let result = send(reply, method: request.method, on: connection, transport)
        if case .stream = reply, result == .YES { release(context, from: conCls, transport) }
        return result
    }
    let handle = ConnectionHandle(pointer: connection)
    context.parked = deferred
    guard
        let ready = transport.park(
            deferred, suspend: { MHD_suspend_connection(connection) },
            resume: { MHD_resume_connection(handle.pointer) })
    else {
        context.deferred = (deferred, request.method)
        return .YES
    }
    return sendDeferred(ready, method: request.method, context, on: connection, transport)
}

/// Lets go of a request's context once its stream is queued: libmicrohttpd calls the access
/// handler no more for the request, and nothing of the context is needed until the stream ends,
/// so every held stream is spared its bytes. (A deferred stream keeps it: it is parked.)
private func release(
    _ context: RequestContext, from conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>,
    _ transport: HTTPTransport
) {
    guard context.parked == nil, context.deferred == nil, let raw = conCls.pointee else { return }
    conCls.pointee = nil
    discard(Unmanaged<RequestContext>.fromOpaque(raw).takeRetainedValue(), transport)
}

/// A request's context let go (the request completed, or its stream was queued): its upload
/// reservation goes back, and a parked deferred reply leaves the pending table.
private func discard(_ context: RequestContext, _ transport: HTTPTransport) {
    transport.options.uploadBudget.release(context.upload.reserved)
    if let parked = context.parked {
        // Sent, or closed before the reply came (a later completion is then dropped).
        parked.abandon()
        transport.unpark(parked)
    }
}

/// Sends a deferred reply's answer. A stream leaves the pending table now (the stream table
/// takes over); a response stays until it has been sent (the request-completed callback), so
/// ``HTTPTransport/stop()`` waits for it.
private func sendDeferred(
    _ reply: TransportReply, method: String, _ context: RequestContext, on connection: OpaquePointer,
    _ transport: HTTPTransport
) -> MHD_Result {
    let result = send(reply, method: method, on: connection, transport)
    if case .stream = reply, method != "HEAD", let parked = context.parked {
        context.parked = nil
        transport.unpark(parked)
    }
    return result
}

/// Queues `reply` (a response or a stream) for a request made with `method`.
private func send(
    _ reply: TransportReply, method: String, on connection: OpaquePointer, _ transport: HTTPTransport
) -> MHD_Result {
    switch reply {
    case .response(let response):
        return queue(response, on: connection, transport)
    case .stream(let headers, _, let onClose) where method == "HEAD":
        // The stream's head without a body: libmicrohttpd 0.9.75 would send a chunked stream's
        // final chunk after a HEAD response's head, breaking the next request on the connection.
        onClose()
        return queue(Response(status: 200, headers: headers), on: connection, transport)
    case .stream(let headers, let subscriber, let onClose):
        return queueStream(headers: headers, subscriber: subscriber, onClose: onClose, on: connection, transport)
    case .deferred(let deferred):
        // A completion is never itself deferred (complete(with:) turns that into a 500).
        deferred.abandon()
        return queue(.text("a deferred reply completed with another", status: 500), on: connection, transport)
    }
}

/// The access handler's arguments on a request's first call.
private struct FirstCall {
    let connection: OpaquePointer
    let url: UnsafePointer<CChar>?
    let method: UnsafePointer<CChar>?
    let version: UnsafePointer<CChar>?
    let queryTooLarge: Bool
    let pathHasNUL: Bool
}

/// Whether `con_cls` holds one of the URI-log callback's markers rather than a request context.
private func isURIMarker(_ raw: UnsafeMutableRawPointer) -> Bool {
    raw == UnsafeMutableRawPointer(mutating: msse_shim_query_too_large_marker())
        || raw == UnsafeMutableRawPointer(mutating: msse_shim_path_nul_marker())
}

/// The head is in, no body byte stored yet: refuse what breaks HTTP's framing (RFC 9112) or does
/// not fit the connection's pool, then ask the layer above, then reserve the announced body.
private func headersArrived(_ call: FirstCall, _ context: RequestContext, _ transport: HTTPTransport) -> MHD_Result {
    let connection = call.connection
    if msse_shim_over_ip_limit(connection) != 0 {
        let limit = transport.options.perIPConnectionLimit
        var refusal = Response.text("too many connections from your address (at most \(limit) at once)", status: 429)
        refusal.headers.append(("Retry-After", "1"))
        return refuse(refusal, context, transport, connection)
    }
    var reason = [CChar](repeating: 0, count: 160)
    if msse_shim_check_request_head(connection, call.method, call.version, &reason, reason.count) != 0 {
        let text = reason.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return refuse(.text("bad request: \(text)", status: 400), context, transport, connection)
    }
    let pool = transport.options.connectionMemoryLimit > 0 ? transport.options.connectionMemoryLimit : 32 << 10
    if call.pathHasNUL {
        return refuse(
            .text("bad request: the path holds an encoded NUL (%00)", status: 400), context, transport, connection)
    }
    if call.queryTooLarge {
        let text = "request target too long: its query does not fit the connection's \(pool)-byte memory"
        return refuse(.text(text, status: 414), context, transport, connection)
    }
    let footprint = msse_shim_request_footprint(connection, call.method, call.version)
    if footprint + Int(MSSE_SHIM_RESPONSE_HEAD_RESERVE) > pool {
        let text =
            "request header fields too large: about \(footprint) bytes of the connection's \(pool)-byte memory"
        guard footprint + Int(MSSE_SHIM_RESPONSE_HEAD_RESERVE) / 2 > pool else {
            return refuse(.text(text, status: 431), context, transport, connection)
        }
        // Too little pool left for libmicrohttpd to build any response head: write it directly.
        context.upload.refused()
        msse_shim_request_arrived(connection)
        let body = text + "\n"
        let answer = Array(
            ("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                + "Content-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body).utf8)
        _ = answer.withUnsafeBytes { msse_shim_send_raw_answer(connection, $0.baseAddress, $0.count) }
        return .NO
    }
    guard let query = connectionValues(connection, .GET_ARGUMENT_KIND, strictUTF8: true) else {
        let refusal = Response.text("query parameters must be valid UTF-8 once percent-decoded", status: 400)
        return refuse(refusal, context, transport, connection)
    }
    let head = Request(
        method: call.method.map { String(cString: $0) } ?? "",
        path: call.url.map { String(cString: $0) } ?? "/",
        httpVersion: call.version.map { String(cString: $0) } ?? "",
        headers: connectionValues(connection, .HEADER_KIND) ?? [],
        query: query,
        remoteAddress: clientAddress(connection))
    if let refusal = transport.admit(head) {
        return refuse(refusal, context, transport, connection)
    }
    context.head = head
    let length = head.header("Content-Length").flatMap { Int($0) }
    let action = context.upload.headers(contentLength: length, reserve: transport.options.uploadBudget.reserve)
    return perform(action, transport, connection)
}

/// Answers on the first call, before any body byte is read, and closes the connection after the
/// answer (an unread body cannot be told from the next request).
private func refuse(
    _ response: Response, _ context: RequestContext, _ transport: HTTPTransport, _ connection: OpaquePointer
) -> MHD_Result {
    context.upload.refused()
    msse_shim_request_arrived(connection)
    var r = response
    if !r.headers.contains(where: { asciiCaseInsensitiveEquals($0.name, "Connection") }) {
        r.headers.append(("Connection", "close"))
    }
    return queue(r, on: connection, transport)
}

/// Carries out an upload action other than `.dispatch`.
private func perform(
    _ action: UploadState.Action, _ transport: HTTPTransport, _ connection: OpaquePointer
) -> MHD_Result {
    switch action {
    case .proceed, .dispatch: return .YES
    case .close: return .NO
    case .refuseTooLarge:
        msse_shim_request_arrived(connection)
        var r = Response.text(
            "request body is larger than \(transport.options.maxBodyBytes) bytes", status: 413)
        r.headers.append(("Connection", "close"))
        return queue(r, on: connection, transport)
    case .refuseBusy:
        msse_shim_request_arrived(connection)
        var r = Response.text(
            "uploads in flight hold the server's \(transport.options.uploadBudget.limit)-byte upload budget; retry",
            status: 503)
        r.headers.append(("Retry-After", "1"))
        r.headers.append(("Connection", "close"))
        return queue(r, on: connection, transport)
    }
}

let requestCompleted: MHD_RequestCompletedCallback = { cls, connection, conCls, _ in
    if let connection { msse_shim_request_finished(connection) }
    guard let conCls, let raw = conCls.pointee else { return }
    conCls.pointee = nil
    guard !isURIMarker(raw) else { return }
    let context = Unmanaged<RequestContext>.fromOpaque(raw).takeRetainedValue()
    guard let cls else { return }
    discard(context, Unmanaged<HTTPTransport>.fromOpaque(cls).takeUnretainedValue())
}

/// Queues a complete response. A header libmicrohttpd refuses is never dropped silently: the
/// answer becomes a `500` that says so (the layer above validates headers first, so this is a
/// last line of defence).
func queue(_ response: Response, on connection: OpaquePointer, _ transport: HTTPTransport) -> MHD_Result {
    let r = response.body.withUnsafeBytes { raw in
        MHD_create_response_from_buffer(
            raw.count, UnsafeMutableRawPointer(mutating: raw.baseAddress), .RESPMEM_MUST_COPY)
    }
    guard let r else { return .NO }
    defer { MHD_destroy_response(r) }
    for (name, value) in response.headers where MHD_add_response_header(r, name, value) != .YES {
        transport.log("response header \(name) refused by libmicrohttpd; answering 500")
        return queue(.text("the server built an invalid response header", status: 500), on: connection, transport)
    }
    guard (try? Response.validateStatus(response.status)) != nil else {
        transport.log("response status \(response.status) is not 100-599; answering 500")
        return queue(.text("the server built an invalid response status", status: 500), on: connection, transport)
    }
    return MHD_queue_response(connection, UInt32(response.status), r)
}

/// Headers or query parameters with their byte lengths, so a value with an encoded NUL (`%00`)
/// reaches validation whole instead of cut at the NUL. Returns nil when `strictUTF8` and a name or
/// value is not valid UTF-8 (never repaired silently: the request is refused).
private func connectionValues(
    _ connection: OpaquePointer, _ kind: MHD_ValueKind, strictUTF8: Bool = false
) -> [(name: String, value: String)]? {
    struct Collected {
        var values: [(name: String, value: String)] = []
        var strict: Bool
        var invalid = false
    }
    var collected = Collected(strict: strictUTF8)
    withUnsafeMutablePointer(to: &collected) { pointer in
        _ = MHD_get_connection_values_n(
            connection, kind,
            { cls, _, key, keySize, value, valueSize in
                guard let cls, let key else { return .YES }
                let c = cls.assumingMemoryBound(to: Collected.self)
                let keyBytes = UnsafeRawBufferPointer(start: key, count: keySize)
                let valueBytes = UnsafeRawBufferPointer(start: value, count: value == nil ? 0 : valueSize)
                if c.pointee.strict {
                    guard let k = String(validating: keyBytes, as: UTF8.self),
                        let v = String(validating: valueBytes, as: UTF8.self)
                    else {
                        c.pointee.invalid = true
                        return .NO
                    }
                    c.pointee.values.append((k, v))
                } else {
                    c.pointee.values.append(
                        (String(decoding: keyBytes, as: UTF8.self), String(decoding: valueBytes, as: UTF8.self)))
                }
                return .YES
            }, pointer)
    }
    return collected.invalid ? nil : collected.values
}

private func clientAddress(_ connection: OpaquePointer) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    guard msse_shim_client_address(connection, &buffer, buffer.count) == 0 else { return "" }
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}
