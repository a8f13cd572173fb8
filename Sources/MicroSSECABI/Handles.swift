// The objects behind the C handles: msse_server, msse_client, msse_request, msse_response.
import CMicroSSE
import MicroSSE
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What `msse_server *` points to: the Swift server plus what the C shell keeps for it.
///
/// Retained once by `msse_server_create` and released once by `msse_server_destroy`.
final class CServer: Sendable {
    let server: Server
    let hooks: CHooks
    /// Why `msse_server_create` failed, for a handle that exists only to say so.
    let createFailure: CFailure?
    /// The last failure message per calling thread (`pthread_self()`), `strdup`ed; freed when
    /// replaced and in `deinit`.
    private let errors = Mutex<[UInt: OwnedCString]>([:])
    private let destroyed = Atomic<Bool>(false)

    init(server: Server, createFailure: CFailure? = nil) {
        self.server = server
        self.createFailure = createFailure
        let hooks = CHooks()
        self.hooks = hooks
        // The closures hold the hooks, never this object or the server, so there is no cycle.
        server.onConnect { hooks.opened($0) }
        server.onDisconnect { hooks.closed($0) }
        if let createFailure { _ = fail(createFailure) }
    }

    /// A new reference for the caller (`msse_server_destroy` releases it).
    var retainedOpaque: OpaquePointer { OpaquePointer(Unmanaged.passRetained(self).toOpaque()) }

    deinit {
        errors.withLock { for s in $0.values { free(s.pointer) } }
    }

    /// Records `failure` as the calling thread's last error and returns its code.
    func fail(_ failure: CFailure) -> Int32 {
        let copy = OwnedCString(pointer: duplicate(failure.message))
        let old = errors.withLock { $0.updateValue(copy, forKey: UInt(pthread_self())) }
        if let old { free(old.pointer) }
        return failure.code
    }

    /// The calling thread's last error message (owned by this object).
    func lastError() -> UnsafePointer<CChar>? {
        errors.withLock { $0[UInt(pthread_self())].map { UnsafePointer($0.pointer) } }
    }

    /// Stops the server, runs every `free_fn` and drops the client handles; once.
    func tearDown() {
        guard !destroyed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        server.stop()
        hooks.tearDown()
    }

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ p: OpaquePointer?) -> CServer? {
        guard let p else { return nil }
        return Unmanaged<CServer>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    }
}

/// A `malloc`ed C string owned by the ``CServer`` that holds it.
///
/// `@unchecked Sendable`: the bytes are written once before the pointer is shared and freed only
/// by the one owner, under its lock (or in its `deinit`).
struct OwnedCString: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<CChar>
}

/// The C callbacks of one server and the handles given out for its clients. Shared with the
/// closures registered on the Swift server, which run on libmicrohttpd's threads.
final class CHooks: Sendable {
    /// The library's reference to each handle given out, from stream open until the disconnect
    /// callbacks have returned (or tear-down).
    private let handles = Mutex<[UInt64: CClient]>([:])
    private let connect = Mutex<[CCallback<msse_client_cb>]>([])
    private let disconnect = Mutex<[CCallback<msse_client_cb>]>([])
    private let frees = Mutex<[FreeHook]>([])

    /// Keeps `free_fn(user_data)` for tear-down.
    func keep(_ free: msse_free_fn?, _ userData: UnsafeMutableRawPointer?) {
        guard let free else { return }
        let hook = FreeHook(free: CCallback(function: free, userData: UserData(pointer: userData)))
        frees.withLock { $0.append(hook) }
    }

    func addConnect(_ callback: CCallback<msse_client_cb>) {
        connect.withLock { $0.append(callback) }
    }

    func addDisconnect(_ callback: CCallback<msse_client_cb>) {
        disconnect.withLock { $0.append(callback) }
    }

    /// The handle for `client`, created (and kept) on first use.
    func handle(for client: Client) -> CClient {
        handles.withLock { h in
            if let existing = h[client.id] { return existing }
            let made = CClient(client)
            h[client.id] = made
            return made
        }
    }

    func opened(_ client: Client) {
        let callbacks = connect.withLock { $0 }
        guard !callbacks.isEmpty else { return }
        let handle = handle(for: client)
        for cb in callbacks { cb.function(cb.userData.pointer, handle.opaque) }
    }

    func closed(_ client: Client) {
        let callbacks = disconnect.withLock { $0 }
        if !callbacks.isEmpty {
            let handle = handle(for: client)
            for cb in callbacks { cb.function(cb.userData.pointer, handle.opaque) }
        }
        _ = handles.withLock { $0.removeValue(forKey: client.id) }
    }

    func tearDown() {
        handles.withLock { $0.removeAll() }
        connect.withLock { $0.removeAll() }
        disconnect.withLock { $0.removeAll() }
        let all = frees.withLock { f in
            defer { f.removeAll() }
            return f
        }
        for hook in all { hook.run() }
    }
}

/// What `msse_client *` points to. Reference-counted: the library's reference lives in
/// ``CHooks``; `msse_client_retain`/`msse_client_release` add and drop the caller's.
///
/// `@unchecked Sendable`: `path` is written once in `init` and freed only in `deinit`.
final class CClient: @unchecked Sendable {
    let client: Client
    let path: UnsafeMutablePointer<CChar>

    init(_ client: Client) {
        self.client = client
        self.path = duplicate(client.request.path)
    }

    deinit { free(path) }

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ p: OpaquePointer?) -> CClient? {
        guard let p else { return nil }
        return Unmanaged<CClient>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    }
}

/// What `msse_request *` points to, for the duration of one callback. C strings handed out are
/// `strdup`ed on demand and freed when the callback has returned.
final class CRequest {
    let request: Request
    private var strings: [UnsafeMutablePointer<CChar>] = []
    private var body: UnsafeMutableRawPointer?
    private lazy var method = keep(request.method)
    private lazy var path = keep(request.path)
    private lazy var remoteAddress = keep(request.remoteAddress)

    init(_ request: Request) {
        self.request = request
    }

    deinit {
        for p in strings { free(p) }
        free(body)
    }

    private func keep(_ s: String) -> UnsafePointer<CChar> {
        let p = duplicate(s)
        strings.append(p)
        return UnsafePointer(p)
    }

    func methodCString() -> UnsafePointer<CChar> { method }
    func pathCString() -> UnsafePointer<CChar> { path }
    func remoteAddressCString() -> UnsafePointer<CChar> { remoteAddress }
    func header(_ name: String) -> UnsafePointer<CChar>? { request.header(name).map(keep) }
    func query(_ name: String) -> UnsafePointer<CChar>? { request.queryValue(name).map(keep) }

    func bodyBytes() -> (UnsafeRawPointer?, Int) {
        guard !request.body.isEmpty else { return (nil, 0) }
        if body == nil {
            let p = malloc(request.body.count)!
            request.body.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            body = p
        }
        return (UnsafeRawPointer(body), request.body.count)
    }

    /// Runs `body` with this request as `const msse_request *`, keeping it alive meanwhile.
    func withOpaque<R>(_ body: (OpaquePointer) -> R) -> R {
        withExtendedLifetime(self) { body(OpaquePointer(Unmanaged.passUnretained(self).toOpaque())) }
    }

    static func from(_ p: OpaquePointer?) -> CRequest? {
        guard let p else { return nil }
        return Unmanaged<CRequest>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    }
}

/// What `msse_response *` points to while a route callback fills it in.
final class CResponse {
    var response = Response(status: 200)

    func withOpaque<R>(_ body: (OpaquePointer) -> R) -> R {
        withExtendedLifetime(self) { body(OpaquePointer(Unmanaged.passUnretained(self).toOpaque())) }
    }

    static func from(_ p: OpaquePointer?) -> CResponse? {
        guard let p else { return nil }
        return Unmanaged<CResponse>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    }
}
