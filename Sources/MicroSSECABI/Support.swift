// Shared pieces of the C ABI shell: result codes, failures, C strings, user data.
//
// Every exported function is declared in include/microsse.h and implemented here with
// `@c @implementation`, so the compiler checks each Swift signature against the header's
// prototype (a mismatch fails the build). Nothing in this target may trap on caller input:
// every argument is checked before the Swift API sees it, and every `MicroSSEError` is turned
// into a negative `MSSE_E*` code.
import CMicroSSE
import MicroSSE

#if canImport(Glibc)
    import Glibc
#endif

/// A failed call: the C result code and a one-line reason for `msse_server_errmsg`.
struct CFailure: Error {
    let code: Int32
    let message: String

    init(_ code: Int32, _ message: String) {
        self.code = code
        self.message = message
    }

    init(_ error: MicroSSEError) {
        self.init(resultCode(error.code), error.message)
    }
}

/// The C result code for a Swift error code (codes added later map to `MSSE_EINTERNAL`).
func resultCode(_ code: MicroSSEError.Code) -> Int32 {
    switch code {
    case .invalidArgument: MSSE_EINVAL
    case .invalidChannel: MSSE_ECHANNEL
    case .invalidID: MSSE_EID
    case .invalidEventName: MSSE_EEVENT
    case .invalidUTF8: MSSE_EUTF8
    case .payloadTooLarge: MSSE_ETOOBIG
    case .invalidState: MSSE_ESTATE
    case .startFailed: MSSE_ESTART
    case .notFound: MSSE_ENOTFOUND
    case .unavailable: MSSE_EUNAVAIL
    default: MSSE_EINTERNAL
    }
}

/// A pointer to a static, NUL-terminated string (Swift string literals are stored that way).
func staticCString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Copies a C string argument, rejecting NULL (`MSSE_EINVAL`) and invalid UTF-8 (`MSSE_EUTF8`).
func string(_ p: UnsafePointer<CChar>?, _ what: String) throws(CFailure) -> String {
    guard let p else { throw CFailure(MSSE_EINVAL, "\(what) must not be NULL") }
    guard let s = String(validatingCString: p) else { throw CFailure(MSSE_EUTF8, "\(what) is not valid UTF-8") }
    return s
}

/// Like ``string(_:_:)`` but NULL gives nil.
func optionalString(_ p: UnsafePointer<CChar>?, _ what: String) throws(CFailure) -> String? {
    guard let p else { return nil }
    return try string(p, what)
}

/// A `malloc`ed copy of `s` (free it with `free`); NUL bytes inside `s` end the C string early.
func duplicate(_ s: String) -> UnsafeMutablePointer<CChar> {
    s.withCString { strdup($0)! }
}

/// Checks a header with the Swift API's rule (`Response.validateHeader`), as a C failure.
func validateHeader(name: String, value: String) throws(CFailure) {
    do throws(MicroSSEError) {
        try Response.validateHeader(name: name, value: value)
    } catch {
        throw CFailure(error)
    }
}

/// Runs a Swift API call, its error mapped to a C failure (the rule is the Swift API's).
func swiftCall<T>(_ body: () throws(MicroSSEError) -> T) throws(CFailure) -> T {
    do throws(MicroSSEError) {
        return try body()
    } catch {
        throw CFailure(error)
    }
}

/// A caller's `void *user_data`, carried into callbacks that run on libmicrohttpd's threads.
///
/// `@unchecked Sendable`: the pointer is never dereferenced by the library, only handed back to
/// the caller's own callbacks; microsse.h states that those callbacks run on libmicrohttpd's
/// thread, so making the pointed-to data safe to use there is the caller's documented duty.
struct UserData: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer?
}

/// A C callback (function pointer) with its user data.
///
/// `@unchecked Sendable`: a C function pointer is an immutable code address; see ``UserData``.
struct CCallback<Function>: @unchecked Sendable {
    let function: Function
    let userData: UserData
}

/// A registered `free_fn` with its user data, run once by `msse_server_destroy`.
struct FreeHook: Sendable {
    let free: CCallback<msse_free_fn>

    func run() { free.function(free.userData.pointer) }
}

/// Runs `body` with a C array of `strings` (valid only during `body`).
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?, Int) -> R) -> R {
    let copies = strings.map { UnsafePointer(duplicate($0)) as UnsafePointer<CChar>? }
    defer { for p in copies { free(UnsafeMutablePointer(mutating: p)) } }
    return copies.withUnsafeBufferPointer { body($0.baseAddress, strings.count) }
}
