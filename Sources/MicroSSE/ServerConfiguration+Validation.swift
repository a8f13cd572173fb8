import MicroSSETransport

/// Settings a module beside MicroSSE keeps in a configuration (MicroSSERedis's, in
/// ``ServerConfiguration/brokerFactory``): ``ServerConfiguration/validate()`` asks them too, so a
/// value they cannot honour is refused like any other field.
package protocol ConfigurationValidating {
    /// Throws `.invalidArgument` with a one-line reason when the settings cannot be honoured in
    /// `configuration`.
    func validate(_ configuration: ServerConfiguration) throws(MicroSSEError)
}

extension ServerConfiguration {
    /// Checks every field; the one set of rules the Swift API, the C ABI and `microsse serve`
    /// share. Throws `.invalidArgument` naming the first field out of range.
    public func validate() throws(MicroSSEError) {
        try check(heartbeatSeconds >= 0, "heartbeatSeconds must not be negative")
        try check((retryMilliseconds ?? 0) >= 0, "retryMilliseconds must not be negative")
        try check(historyCount >= 0, "historyCount must not be negative")
        try check(historyBytes >= 0, "historyBytes must not be negative")
        try check(maxClients >= 1, "maxClients must be at least 1")
        try check(clientBufferBytes >= 1_024, "clientBufferBytes must be at least 1024")
        try check(maxPublishBytes >= 0, "maxPublishBytes must not be negative")
        try check(writeTimeoutSeconds >= 0, "writeTimeoutSeconds must not be negative")
        try check(connectionTimeoutSeconds >= 0, "connectionTimeoutSeconds must not be negative")
        try check(connectionLimit >= 1, "connectionLimit must be at least 1")
        try check(perIPConnectionLimit >= 0, "perIPConnectionLimit must not be negative")
        try check(connectionMemoryLimit >= 2_048, "connectionMemoryLimit must be at least 2048")
        try check((1...256).contains(threadPoolSize), "threadPoolSize must be between 1 and 256")
        try check(shutdownDrainMilliseconds >= 0, "shutdownDrainMilliseconds must not be negative")
        try check(drainWindowMilliseconds >= 0, "drainWindowMilliseconds must not be negative")
        try check(historyTTLSeconds >= 0, "historyTTLSeconds must not be negative")
        if let publishToken {
            let visible = publishToken.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
            try check(
                !publishToken.isEmpty && visible,
                "publishToken must be non-empty visible ASCII (it is sent as Authorization: Bearer <token>)")
        }
        if let statsToken {
            let visible = statsToken.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
            try check(
                !statsToken.isEmpty && visible,
                "statsToken must be non-empty visible ASCII (it is sent as Authorization: Bearer <token>)")
        }
        try check(historyMemoryBytes >= 0, "historyMemoryBytes must not be negative")
        for host in allowedHosts {
            let visible = host.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") }
            try check(!host.isEmpty && visible, "allowedHosts must hold host names without spaces or slashes")
        }
        try validateJWT()
        for origin in corsOrigins {
            do throws(MicroSSEError) {
                try Response.validateHeader(name: "Access-Control-Allow-Origin", value: origin)
            } catch {
                throw MicroSSEError(.invalidArgument, "corsOrigins: \(error.message)")
            }
            try check(!origin.isEmpty, "corsOrigins must not contain an empty origin")
        }
        if let tls {
            try check(tls.certificatePEM.contains("-----BEGIN "), "tls.certificatePEM is not PEM text")
            try check(tls.privateKeyPEM.contains("-----BEGIN "), "tls.privateKeyPEM is not PEM text")
        }
        try check(maxUploadBytesInFlight >= 1, "maxUploadBytesInFlight must be at least 1")
        try check(maxChannelsPerStream >= 1, "maxChannelsPerStream must be at least 1")
        if let settings = brokerFactory as? any ConfigurationValidating { try settings.validate(self) }
    }

    private func check(_ condition: Bool, _ reason: String) throws(MicroSSEError) {
        if !condition { throw MicroSSEError(.invalidArgument, reason) }
    }

    /// What the transport needs of the configuration.
    var transportOptions: TransportOptions {
        TransportOptions(
            host: host, port: port, connectionLimit: connectionLimit, connectionMemoryLimit: connectionMemoryLimit,
            connectionTimeout: connectionTimeoutSeconds, threadPoolSize: threadPoolSize,
            perIPConnectionLimit: perIPConnectionLimit, maxBodyBytes: maxPublishBytes,
            tlsCertificatePEM: tls?.certificatePEM, tlsKeyPEM: tls?.privateKeyPEM,
            drainTimeoutMilliseconds: shutdownDrainMilliseconds, raiseFileLimit: raiseFileLimit,
            maxUploadBytesInFlight: maxUploadBytesInFlight)
    }
}
