// Callbacks, routes and stream routes, and the msse_request_* / msse_response_* accessors.
public import CMicroSSE
import MicroSSE

#if canImport(Glibc)
    import Glibc
#endif

/// The one-line reason sent with an authorizer's refusal.
private func reason(for status: Int) -> String {
    switch status {
    case 400: "bad request"
    case 401: "unauthorized"
    case 403: "forbidden"
    case 404: "not found"
    case 429: "too many requests"
    case 503: "unavailable"
    default: "refused"
    }
}

@c @implementation
public func msse_server_set_authorizer(
    _ srv: OpaquePointer!, _ cb: msse_authorize_cb!, _ userData: UnsafeMutableRawPointer!, _ freeFn: msse_free_fn!
) -> Int32 {
    guard let s = CServer.from(srv) else { return MSSE_EINVAL }
    s.hooks.keep(freeFn, userData)
    guard let cb else {
        s.server.setAuthorizer { _, _ in .allow }
        return MSSE_OK
    }
    let callback = CCallback(function: cb, userData: UserData(pointer: userData))
    s.server.setAuthorizer { request, access in
        let (kind, names): (Int32, [String]) =
            switch access {
            case .subscribe(let channels): (MSSE_ACCESS_SUBSCRIBE, channels)
            case .publish(let channel): (MSSE_ACCESS_PUBLISH, [channel])
            case .stream(let path): (MSSE_ACCESS_STREAM, [path])
            case .route(let path): (MSSE_ACCESS_ROUTE, [path])
            }
        let answer = CRequest(request).withOpaque { req in
            withCStringArray(names) { array, count in
                callback.function(callback.userData.pointer, req, kind, array, count)
            }
        }
        if answer == 0 { return .allow }
        let status = (400...599).contains(answer) ? Int(answer) : 403
        return .deny(status: status, reason: reason(for: status))
    }
    return MSSE_OK
}

@c @implementation
public func msse_server_on_connect(
    _ srv: OpaquePointer!, _ cb: msse_client_cb!, _ userData: UnsafeMutableRawPointer!, _ freeFn: msse_free_fn!
) -> Int32 {
    guard let s = CServer.from(srv), let cb else { return MSSE_EINVAL }
    s.hooks.keep(freeFn, userData)
    s.hooks.addConnect(CCallback(function: cb, userData: UserData(pointer: userData)))
    return MSSE_OK
}

@c @implementation
public func msse_server_on_disconnect(
    _ srv: OpaquePointer!, _ cb: msse_client_cb!, _ userData: UnsafeMutableRawPointer!, _ freeFn: msse_free_fn!
) -> Int32 {
    guard let s = CServer.from(srv), let cb else { return MSSE_EINVAL }
    s.hooks.keep(freeFn, userData)
    s.hooks.addDisconnect(CCallback(function: cb, userData: UserData(pointer: userData)))
    return MSSE_OK
}

@c @implementation
public func msse_server_add_route(
    _ srv: OpaquePointer!, _ method: UnsafePointer<CChar>!, _ path: UnsafePointer<CChar>!, _ cb: msse_route_cb!,
    _ userData: UnsafeMutableRawPointer!, _ freeFn: msse_free_fn!
) -> Int32 {
    guard let s = CServer.from(srv) else { return MSSE_EINVAL }
    do throws(CFailure) {
        let method = try string(method, "method")
        let path = try string(path, "path")
        guard let cb else { throw CFailure(MSSE_EINVAL, "route callback must not be NULL") }
        let callback = CCallback(function: cb, userData: UserData(pointer: userData))
        try swiftCall { () throws(MicroSSEError) in
            try s.server.addRoute(method, path) { request in
                let response = CResponse()
                CRequest(request).withOpaque { req in
                    response.withOpaque { res in callback.function(callback.userData.pointer, req, res) }
                }
                return response.response
            }
        }
        s.hooks.keep(freeFn, userData)
        return MSSE_OK
    } catch {
        return s.fail(error)
    }
}

@c @implementation
public func msse_server_add_static_route(
    _ srv: OpaquePointer!, _ method: UnsafePointer<CChar>!, _ path: UnsafePointer<CChar>!, _ status: Int32,
    _ contentType: UnsafePointer<CChar>!, _ body: UnsafeRawPointer!, _ len: Int
) -> Int32 {
    guard let s = CServer.from(srv) else { return MSSE_EINVAL }
    do throws(CFailure) {
        let method = try string(method, "method")
        let path = try string(path, "path")
        try swiftCall { () throws(MicroSSEError) in try Response.validateStatus(Int(status)) }
        guard len >= 0, body != nil || len == 0 else { throw CFailure(MSSE_EINVAL, "body is NULL but len is \(len)") }
        var response = Response(status: Int(status))
        if let type = try optionalString(contentType, "content_type") {
            try validateHeader(name: "Content-Type", value: type)
            response.headers.append(("Content-Type", type))
        }
        response.body = Array(UnsafeRawBufferPointer(start: body, count: len))
        let fixed = response
        try swiftCall { () throws(MicroSSEError) in try s.server.addRoute(method, path) { _ in fixed } }
        return MSSE_OK
    } catch {
        return s.fail(error)
    }
}

@c @implementation
public func msse_server_add_stream_route(
    _ srv: OpaquePointer!, _ path: UnsafePointer<CChar>!, _ cb: msse_stream_cb!,
    _ userData: UnsafeMutableRawPointer!, _ freeFn: msse_free_fn!
) -> Int32 {
    guard let s = CServer.from(srv) else { return MSSE_EINVAL }
    do throws(CFailure) {
        let path = try string(path, "path")
        guard let cb else { throw CFailure(MSSE_EINVAL, "stream callback must not be NULL") }
        let callback = CCallback(function: cb, userData: UserData(pointer: userData))
        let hooks = s.hooks
        try swiftCall { () throws(MicroSSEError) in
            try s.server.addStreamRoute(path) { request, client in
                let handle = hooks.handle(for: client)
                CRequest(request).withOpaque { req in
                    callback.function(callback.userData.pointer, req, handle.opaque)
                }
            }
        }
        s.hooks.keep(freeFn, userData)
        return MSSE_OK
    } catch {
        return s.fail(error)
    }
}

// MARK: Requests

@c @implementation
public func msse_request_method(_ req: OpaquePointer!) -> UnsafePointer<CChar>! {
    CRequest.from(req)?.methodCString() ?? staticCString("")
}

@c @implementation
public func msse_request_path(_ req: OpaquePointer!) -> UnsafePointer<CChar>! {
    CRequest.from(req)?.pathCString() ?? staticCString("")
}

@c @implementation
public func msse_request_header(_ req: OpaquePointer!, _ name: UnsafePointer<CChar>!) -> UnsafePointer<CChar>! {
    guard let r = CRequest.from(req), let name, let n = String(validatingCString: name) else { return nil }
    return r.header(n)
}

@c @implementation
public func msse_request_query(_ req: OpaquePointer!, _ name: UnsafePointer<CChar>!) -> UnsafePointer<CChar>! {
    guard let r = CRequest.from(req), let name, let n = String(validatingCString: name) else { return nil }
    return r.query(n)
}

@c @implementation
public func msse_request_remote_address(_ req: OpaquePointer!) -> UnsafePointer<CChar>! {
    CRequest.from(req)?.remoteAddressCString() ?? staticCString("")
}

@c @implementation
public func msse_request_body(_ req: OpaquePointer!, _ len: UnsafeMutablePointer<Int>!) -> UnsafeRawPointer! {
    let (body, count) = CRequest.from(req)?.bodyBytes() ?? (nil, 0)
    len?.pointee = count
    return body
}

// MARK: Responses

@c @implementation
public func msse_response_set_status(_ res: OpaquePointer!, _ status: Int32) -> Int32 {
    guard let r = CResponse.from(res) else { return MSSE_EINVAL }
    do throws(MicroSSEError) {
        try Response.validateStatus(Int(status))
    } catch {
        return resultCode(error.code)
    }
    r.response.status = Int(status)
    return MSSE_OK
}

@c @implementation
public func msse_response_add_header(
    _ res: OpaquePointer!, _ name: UnsafePointer<CChar>!, _ value: UnsafePointer<CChar>!
) -> Int32 {
    guard let r = CResponse.from(res) else { return MSSE_EINVAL }
    do throws(CFailure) {
        let n = try string(name, "header name")
        let v = try string(value, "header value")
        try validateHeader(name: n, value: v)
        r.response.headers.append((n, v))
        return MSSE_OK
    } catch {
        return error.code
    }
}

@c @implementation
public func msse_response_set_body(_ res: OpaquePointer!, _ body: UnsafeRawPointer!, _ len: Int) -> Int32 {
    guard let r = CResponse.from(res), len >= 0, body != nil || len == 0 else { return MSSE_EINVAL }
    r.response.body = Array(UnsafeRawBufferPointer(start: body, count: len))
    return MSSE_OK
}
