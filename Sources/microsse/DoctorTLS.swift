// The doctor's TLS: a GnuTLS client session over the same POSIX socket, non-blocking, so every
// handshake, read and write is bounded by a deadline.
import CGnuTLS
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// How the doctor trusts servers' certificates (`--insecure`, `--ca-file`).
struct TLSTrust: Sendable {
    /// Do not fail on a certificate that does not verify (a self-signed test setup).
    var insecure = false
    /// A PEM file of certificates trusted besides the system's store.
    var caFile: String?

    /// How the certificate was trusted, for the report.
    var source: String { caFile.map { "the system store and --ca-file \($0)" } ?? "the system store" }
}

/// The handshake failed because the server's certificate did not verify.
struct CertificateNotTrusted: Error, CustomStringConvertible {
    let description: String
}

/// A failed handshake or TLS read or write.
struct TLSFailure: Error, CustomStringConvertible {
    let description: String
}

/// GnuTLS's text for an error code.
private func tlsError(_ code: Int32) -> String { String(cString: gnutls_strerror(code)) }

/// Whether `host` is an IP address (no SNI for those).
private func isIPAddress(_ host: String) -> Bool {
    var buffer = [UInt8](repeating: 0, count: 16)
    return inet_pton(AF_INET, host, &buffer) == 1 || inet_pton(AF_INET6, host, &buffer) == 1
}

/// Waits until `fd` is readable (or writable) or `deadline` passes; false on timeout.
func waitReady(_ fd: Int32, write: Bool, deadline: Double) -> Bool {
    while true {
        let remaining = deadline - monotonicSeconds()
        guard remaining > 0 else { return false }
        var p = pollfd(fd: fd, events: Int16(write ? POLLOUT : POLLIN), revents: 0)
        let ready = poll(&p, 1, Int32(min(remaining * 1000 + 1, 3_600_000)))
        if ready > 0 { return true }
        if ready < 0, errno != EINTR { return false }
    }
}

/// Trusted certificates, loaded once per trust setting and shared by every session (GnuTLS
/// allows that), so a probe's connection does not read the system store again.
private final class Credentials: @unchecked Sendable {
    let pointer: gnutls_certificate_credentials_t?

    private init(_ pointer: gnutls_certificate_credentials_t?) { self.pointer = pointer }

    private static let loaded = Mutex<[String: Credentials]>([:])

    static func of(_ trust: TLSTrust) throws -> Credentials {
        let key = "\(trust.insecure) \(trust.caFile ?? "")"
        return try loaded.withLock { loaded in
            if let made = loaded[key] { return made }
            let made = try load(trust)
            loaded[key] = made
            return made
        }
    }

    private static func load(_ trust: TLSTrust) throws -> Credentials {
        var pointer: gnutls_certificate_credentials_t?
        let allocated = gnutls_certificate_allocate_credentials(&pointer)
        guard allocated >= 0 else { throw TLSFailure(description: "TLS credentials: \(tlsError(allocated))") }
        let made = Credentials(pointer)
        let system = gnutls_certificate_set_x509_system_trust(pointer)
        if let caFile = trust.caFile {
            let loaded = gnutls_certificate_set_x509_trust_file(pointer, caFile, GNUTLS_X509_FMT_PEM)
            guard loaded > 0 else {
                throw TLSFailure(
                    description: "--ca-file \(caFile): " + (loaded == 0 ? "no PEM certificate in it" : tlsError(loaded))
                )
            }
        } else if system <= 0, !trust.insecure {
            throw TLSFailure(description: "no system trust store (\(tlsError(system))); give one with --ca-file")
        }
        return made
    }

    deinit { gnutls_certificate_free_credentials(pointer) }
}

/// One client TLS session on a connected socket.
final class TLSSession {
    private var session: gnutls_session_t?
    private let credentials: Credentials
    private let fd: Int32
    /// The host name the certificate is checked against; GnuTLS keeps the pointer for the session.
    private let verifiedName: UnsafeMutablePointer<CChar>?
    /// The TLS version, e.g. `TLS1.3`.
    private(set) var version = ""
    /// The protocol the server picked by ALPN, nil when it picked none.
    private(set) var alpn: String?
    /// Why the certificate would not verify, when `--insecure` let it through; nil when it verifies.
    private(set) var unverifiedBecause: String?
    let trust: TLSTrust

    /// Handshakes on `fd` (made non-blocking) for `host`, offering `protocols` by ALPN.
    init(fd: Int32, host: String, protocols: [String], trust: TLSTrust, deadline: Double) throws {
        self.fd = fd
        self.trust = trust
        credentials = try Credentials.of(trust)
        verifiedName = strdup(host)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        try check(gnutls_init(&session, UInt32(GNUTLS_CLIENT)), "session")
        try check(gnutls_set_default_priority(session), "priority")
        let certificates = UnsafeMutableRawPointer(credentials.pointer)
        try check(gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, certificates), "credentials")
        if !isIPAddress(host) {
            try check(gnutls_server_name_set(session, GNUTLS_NAME_DNS, host, host.utf8.count), "server name")
        }
        if !trust.insecure { gnutls_session_set_verify_cert(session, verifiedName, 0) }
        try offer(protocols)
        gnutls_transport_set_int2(session, fd, fd)
        gnutls_handshake_set_timeout(session, 0)
        try handshake(deadline: deadline)
        version = String(cString: gnutls_protocol_get_name(gnutls_protocol_get_version(session)))
        var selected = gnutls_datum_t()
        if gnutls_alpn_get_selected_protocol(session, &selected) == 0, let data = selected.data {
            alpn = String(decoding: UnsafeBufferPointer(start: data, count: Int(selected.size)), as: UTF8.self)
        }
        if trust.insecure {
            var status: UInt32 = 0
            let rc = gnutls_certificate_verify_peers3(session, host, &status)
            if rc < 0 {
                unverifiedBecause = tlsError(rc)
            } else if status != 0 {
                unverifiedBecause = statusText(status).trimmingCharacters(in: " ")
            }
        }
    }

    deinit {
        if let session { gnutls_deinit(session) }
        free(verifiedName)
    }

    private func check(_ code: Int32, _ what: String) throws {
        guard code >= 0 else { throw TLSFailure(description: "TLS \(what): \(tlsError(code))") }
    }

    private func offer(_ protocols: [String]) throws {
        guard !protocols.isEmpty else { return }
        var names = protocols.map { Array($0.utf8) }
        let code = names.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var datums: [gnutls_datum_t] = []
            for i in buffer.indices {
                buffer[i].withUnsafeMutableBufferPointer {
                    datums.append(gnutls_datum_t(data: $0.baseAddress, size: UInt32($0.count)))
                }
            }
            // GnuTLS copies the names before returning.
            return gnutls_alpn_set_protocols(session, datums, UInt32(datums.count), 0)
        }
        try check(code, "ALPN")
    }

    private func statusText(_ status: UInt32) -> String {
        var out = gnutls_datum_t()
        guard gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0,
            let data = out.data
        else { return "status \(status)" }
        // GnuTLS allocates with malloc (gnutls_free is free).
        defer { free(data) }
        return String(cString: data)
    }

    private func handshake(deadline: Double) throws {
        while true {
            let rc = gnutls_handshake(session)
            if rc == GNUTLS_E_SUCCESS { return }
            if rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED {
                guard waitReady(fd, write: gnutls_record_get_direction(session) == 1, deadline: deadline) else {
                    throw TLSFailure(description: "TLS handshake timed out")
                }
                continue
            }
            if gnutls_error_is_fatal(rc) == 0 { continue }
            if rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR {
                let status = gnutls_session_get_verify_cert_status(session)
                throw CertificateNotTrusted(description: statusText(status).trimmingCharacters(in: " "))
            }
            throw TLSFailure(description: "TLS handshake failed: \(tlsError(rc))")
        }
    }

    /// Sends all of `bytes`, waiting for the socket up to `deadline`.
    func send(_ bytes: [UInt8], deadline: Double) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { gnutls_record_send(session, $0.baseAddress, $0.count) }
            if n > 0 {
                offset += n
            } else if n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED {
                guard waitReady(fd, write: true, deadline: deadline) else {
                    throw DoctorError("send timed out")
                }
            } else {
                throw DoctorError("TLS send failed: \(tlsError(Int32(n)))")
            }
        }
    }

    /// One read: the bytes (empty at the end of the stream), or nil when nothing came before `deadline`.
    func receive(deadline: Double) throws -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if gnutls_record_check_pending(session) == 0, !waitReady(fd, write: false, deadline: deadline) {
                return nil
            }
            let n = chunk.withUnsafeMutableBytes { gnutls_record_recv(session, $0.baseAddress, $0.count) }
            if n > 0 { return Array(chunk[0..<n]) }
            if n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION { return [] }
            if n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED || gnutls_error_is_fatal(Int32(n)) == 0 { continue }
            if errno == ECONNRESET { return [] }
            throw DoctorError("TLS read failed: \(tlsError(Int32(n)))")
        }
    }

    /// Says goodbye without waiting for the answer.
    func close() {
        if let session { _ = gnutls_bye(session, GNUTLS_SHUT_WR) }
    }
}

/// Which protocol the server at `url` picks when offered `h2` and `http/1.1` (a separate
/// handshake, as browsers make); nil when it picks none.
func offeredProtocol(_ url: DoctorURL, timeout: Double) throws -> String? {
    let connection = try HTTPConnection(url, timeout: timeout, protocols: ["h2", "http/1.1"])
    defer { connection.close() }
    return connection.tls?.alpn
}

extension Report {
    /// The TLS session of the stream: its version and whether the certificate verified.
    func checkTLS(_ tls: TLSSession, host: String) {
        let trusting = "trusting \(tls.trust.source)"
        if !tls.trust.insecure {
            add(.ok, "tls", "\(tls.version), certificate verified for \(host) (\(trusting))")
        } else if let reason = tls.unverifiedBecause {
            add(
                .warn, "tls",
                "\(tls.version), certificate NOT verified (--insecure): browsers would refuse it: "
                    + reason)
        } else {
            add(.ok, "tls", "\(tls.version), certificate verified for \(host) (\(trusting); --insecure not needed)")
        }
    }

    /// Whether the server offers HTTP/2 by ALPN, as browsers would ask for it.
    func checkHTTP2(_ url: DoctorURL, timeout: Double) {
        do {
            if try offeredProtocol(url, timeout: timeout) == "h2" {
                add(.ok, "http/2", "offered by the server (browsers share one connection)")
            } else {
                add(.warn, "http/2", "not offered: browsers are limited to 6 streams per origin")
            }
        } catch {
            add(.warn, "http/2", "could not check (a second handshake failed: \(error))")
        }
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        String(drop { $0 == set }.reversed().drop { $0 == set }.reversed())
    }
}
