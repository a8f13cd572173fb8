import MicroSSE

/// A started server on 127.0.0.1 with an ephemeral port, heartbeats off unless `configure` turns
/// them on.
public func makeServer(_ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> Server {
    var config = ServerConfiguration()
    config.port = 0
    config.heartbeatSeconds = 0
    configure(&config)
    let server = Server(configuration: config)
    try server.start()
    return server
}
