// msse_publish, msse_publish_event, msse_event_init and the msse_client_* functions.
public import CMicroSSE
import MicroSSE

#if canImport(Glibc)
    import Glibc
#endif

/// The end of the first published `msse_event` layout.
private let eventSizeV1 = MemoryLayout<msse_event>.offset(of: \msse_event.retry_ms)! + 4

/// Converts C fields to an event (`Event`'s rules; the size limit and reserved names are the
/// publish's and `Client.send`'s). Checks only what a C value can be and a Swift one cannot: a
/// length that does not fit, NULL data with a length, a retry below -1 (none).
func makeEvent(
    event: UnsafePointer<CChar>?, id: UnsafePointer<CChar>?, data: UnsafePointer<CChar>?, len: Int,
    retry: Int32
) throws(CFailure) -> Event {
    // size_t imports as Int: a length above Int.max arrives negative.
    guard len >= 0 else { throw CFailure(MSSE_EINVAL, "data length is too large") }
    guard data != nil || len == 0 else { throw CFailure(MSSE_EINVAL, "data is NULL but len is \(len)") }
    guard retry >= -1 else { throw CFailure(MSSE_EINVAL, "retry_ms must be -1 (none) or at least 0") }
    let name = try optionalString(event, "event")
    let id = try optionalString(id, "id")
    let bytes = UnsafeRawBufferPointer(start: data, count: len)
    do throws(MicroSSEError) {
        return try Event(utf8Data: bytes, event: name, id: id, retry: retry == -1 ? nil : Int(retry))
    } catch {
        throw CFailure(error)
    }
}

/// Reads a caller's `msse_event` (only its first `size` bytes; see `msse_config`).
private func readEvent(_ p: UnsafePointer<msse_event>?) throws(CFailure) -> msse_event {
    guard let p else { throw CFailure(MSSE_EINVAL, "event must not be NULL") }
    let raw = UnsafeRawPointer(p)
    let size = raw.loadUnaligned(as: Int.self)
    guard size >= eventSizeV1 else {
        throw CFailure(MSSE_EINVAL, "msse_event.size is \(size): initialize the event with msse_event_init")
    }
    var e = msse_event()
    e.retry_ms = -1
    withUnsafeMutableBytes(of: &e) { $0.baseAddress!.copyMemory(from: raw, byteCount: min(size, $0.count)) }
    return e
}

private func publish(_ s: CServer, _ channel: UnsafePointer<CChar>?, _ event: Event) throws(CFailure) -> String {
    guard let channel else { throw CFailure(MSSE_EINVAL, "channel must not be NULL") }
    guard let name = String(validatingCString: channel) else {
        throw CFailure(MSSE_ECHANNEL, "channel name is not valid UTF-8")
    }
    do throws(MicroSSEError) {
        return try s.server.publish(event, to: name)
    } catch {
        throw CFailure(error)
    }
}

@c @implementation
public func msse_publish(
    _ srv: OpaquePointer!, _ channel: UnsafePointer<CChar>!, _ event: UnsafePointer<CChar>!,
    _ id: UnsafePointer<CChar>!, _ data: UnsafePointer<CChar>!, _ len: Int
) -> Int32 {
    guard let s = CServer.from(srv) else { return MSSE_EINVAL }
    do throws(CFailure) {
        let e = try makeEvent(event: event, id: id, data: data, len: len, retry: -1)
        _ = try publish(s, channel, e)
        return MSSE_OK
    } catch {
        return s.fail(error)
    }
}

@c @implementation
public func msse_event_init(_ ev: UnsafeMutablePointer<msse_event>!) {
    guard let ev else { return }
    var e = msse_event()
    e.size = MemoryLayout<msse_event>.size
    e.retry_ms = -1
    ev.pointee = e
}

@c @implementation
public func msse_publish_event(
    _ srv: OpaquePointer!, _ channel: UnsafePointer<CChar>!, _ ev: UnsafePointer<msse_event>!,
    _ idOut: UnsafeMutablePointer<CChar>!, _ idOutSize: Int
) -> Int32 {
    guard let s = CServer.from(srv) else { return MSSE_EINVAL }
    do throws(CFailure) {
        guard idOut == nil || idOutSize > 0 else { throw CFailure(MSSE_EINVAL, "id_out_size must be at least 1") }
        let e = try readEvent(ev)
        let event = try makeEvent(
            event: e.event, id: e.id, data: e.data, len: e.len, retry: e.retry_ms)
        let id = try publish(s, channel, event)
        guard let idOut else { return MSSE_OK }
        let bytes = Array(id.utf8)
        guard bytes.count < idOutSize else {
            idOut[0] = 0
            throw CFailure(MSSE_ESPACE, "the id needs \(bytes.count + 1) bytes, id_out has \(idOutSize)")
        }
        for (i, b) in bytes.enumerated() { idOut[i] = CChar(bitPattern: b) }
        idOut[bytes.count] = 0
        return MSSE_OK
    } catch {
        return s.fail(error)
    }
}

// MARK: Clients

/// `client.send(event)` as a result code: `MSSE_ECLOSED` for a stream that is gone.
private func send(_ event: Event, to client: Client) throws(CFailure) -> Int32 {
    do throws(MicroSSEError) {
        return try client.send(event) ? MSSE_OK : MSSE_ECLOSED
    } catch {
        throw CFailure(error)
    }
}

@c @implementation
public func msse_client_send(
    _ client: OpaquePointer!, _ event: UnsafePointer<CChar>!, _ id: UnsafePointer<CChar>!,
    _ data: UnsafePointer<CChar>!, _ len: Int
) -> Int32 {
    guard let c = CClient.from(client) else { return MSSE_EINVAL }
    do throws(CFailure) {
        let e = try makeEvent(event: event, id: id, data: data, len: len, retry: -1)
        return try send(e, to: c.client)
    } catch {
        return error.code
    }
}

@c @implementation
public func msse_client_send_event(_ client: OpaquePointer!, _ ev: UnsafePointer<msse_event>!) -> Int32 {
    guard let c = CClient.from(client) else { return MSSE_EINVAL }
    do throws(CFailure) {
        let e = try readEvent(ev)
        let event = try makeEvent(
            event: e.event, id: e.id, data: e.data, len: e.len, retry: e.retry_ms)
        return try send(event, to: c.client)
    } catch {
        return error.code
    }
}

@c @implementation
public func msse_client_send_comment(_ client: OpaquePointer!, _ text: UnsafePointer<CChar>!) -> Int32 {
    guard let c = CClient.from(client) else { return MSSE_EINVAL }
    do throws(CFailure) {
        let comment = try string(text, "comment")
        return c.client.send(comment: comment) ? MSSE_OK : MSSE_ECLOSED
    } catch {
        return error.code
    }
}

@c @implementation
public func msse_client_close(_ client: OpaquePointer!) -> Int32 {
    guard let c = CClient.from(client) else { return MSSE_EINVAL }
    c.client.close()
    return MSSE_OK
}

@c @implementation
public func msse_client_id(_ client: OpaquePointer!) -> UInt64 {
    CClient.from(client)?.client.id ?? 0
}

@c @implementation
public func msse_client_is_open(_ client: OpaquePointer!) -> Int32 {
    CClient.from(client)?.client.isOpen == true ? 1 : 0
}

@c @implementation
public func msse_client_path(_ client: OpaquePointer!) -> UnsafePointer<CChar>! {
    guard let c = CClient.from(client) else { return staticCString("") }
    return UnsafePointer(c.path)
}

@c @implementation
public func msse_client_retain(_ client: OpaquePointer!) -> OpaquePointer! {
    guard let client else { return nil }
    _ = Unmanaged<CClient>.fromOpaque(UnsafeRawPointer(client)).retain()
    return client
}

@c @implementation
public func msse_client_release(_ client: OpaquePointer!) {
    guard let client else { return }
    Unmanaged<CClient>.fromOpaque(UnsafeRawPointer(client)).release()
}
