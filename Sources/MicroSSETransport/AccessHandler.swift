internal import CMHDShim
internal import CMicroHTTPD
import MicroSSECore
import MicroSSEWire

/// Per-request state in `con_cls`: the body as it arrives. Only touched on the connection's
/// own libmicrohttpd thread, one call at a time, hence `@unchecked Sendable`.
private final class RequestContext: @unchecked Sendable {
    var upload: UploadState

    init(limit: Int) {
        upload = UploadState(limit: limit)
    }
}

/// libmicrohttpd's access handler: called when the headers are in, per piece of body, and once
/// more when the body is complete. The request goes to the layer above only then.
let accessHandler: MHD_AccessHandlerCallback = {
    cls, connection, url, method, version, uploadData, uploadDataSize, conCls in
    guard let cls, let connection, let conCls, let uploadDataSize else { return .NO }
    let transport = Unmanaged<HTTPTransport>.fromOpaque(cls).takeUnretainedValue()
    guard let raw = conCls.pointee else {
        let context = RequestContext(limit: transport.options.maxBodyBytes)
        conCls.pointee = Unmanaged.passRetained(context).toOpaque()
        let length = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length").flatMap {
            Int(String(cString: $0))
        }
        return perform(context.upload.headers(contentLength: length), transport, connection)
    }
    let context = Unmanaged<RequestContext>.fromOpaque(raw).takeUnretainedValue()
    if uploadDataSize.pointee > 0 {
        let bytes = UnsafeRawBufferPointer(start: uploadData, count: uploadDataSize.pointee)
        uploadDataSize.pointee = 0
        return perform(context.upload.receive(bytes), transport, connection)
    }
    let action = context.upload.end()
    guard action == .dispatch else { return perform(action, transport, connection) }
    msse_shim_request_arrived(connection)
    guard let query = connectionValues(connection, .GET_ARGUMENT_KIND, strictUTF8: true) else {
        let refusal = Response.text("query parameters must be valid UTF-8 once percent-decoded", status: 400)
        return queue(refusal, on: connection, transport)
    }
    let request = Request(
        method: method.map { String(cString: $0) } ?? "",
        path: url.map { String(cString: $0) } ?? "/",
        httpVersion: version.map { String(cString: $0) } ?? "",
        headers: connectionValues(connection, .HEADER_KIND) ?? [],
        query: query,
        body: context.upload.takeBody(),
        remoteAddress: clientAddress(connection))
    switch transport.reply(to: request) {
    case .response(let response):
        return queue(response, on: connection, transport)
    case .stream(let headers, let subscriber, let onClose):
        return queueStream(headers: headers, subscriber: subscriber, onClose: onClose, on: connection, transport)
    }
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
    }
}

let requestCompleted: MHD_RequestCompletedCallback = { _, connection, conCls, _ in
    if let connection { msse_shim_request_finished(connection) }
    guard let conCls, let raw = conCls.pointee else { return }
    conCls.pointee = nil
    Unmanaged<RequestContext>.fromOpaque(raw).release()
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
    return MHD_queue_response(connection, UInt32(clamping: response.status), r)
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
