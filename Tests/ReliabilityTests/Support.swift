import MicroSSE
import MicroSSETestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Open file descriptors of this process (the server runs in it).
func openFileCount() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while readdir(dir) != nil { n += 1 }
    return n - 3  // ".", ".." and the directory's own descriptor
}

/// Sends raw bytes on a new connection and reads the status line, if any comes before EOF.
func rawStatus(port: UInt16, _ request: String, timeout: Double = 5) throws -> Int? {
    let c = try RawConnection(port: port)
    defer { c.close() }
    try c.send(request)
    return try? c.readHead(timeout: timeout).status
}

/// Sends raw bytes on a new connection; returns the status and the connection for more reads.
func rawRequest(port: UInt16, _ bytes: [UInt8], timeout: Double = 5) throws -> (Int?, RawConnection) {
    let c = try RawConnection(port: port)
    try? c.send(bytes)
    return (try? c.readHead(timeout: timeout).status, c)
}

/// Whether this test binary (and so the `microsse` built next to it) runs under ASan or TSan:
/// their quarantine and shadow memory make RSS meaningless, so RSS bounds are not asserted then
/// (fd and thread counts still are).
let runningUnderSanitizer: Bool = {
    guard let handle = dlopen(nil, RTLD_NOW) else { return false }
    defer { dlclose(handle) }
    return dlsym(handle, "__asan_init") != nil || dlsym(handle, "__tsan_init") != nil
}()
