import MicroSSE
import MicroSSETestSupport

/// A server on 127.0.0.1 with an ephemeral port, heartbeats off unless a test turns them on.
func makeServer(_ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> Server {
    var config = ServerConfiguration()
    config.port = 0
    config.heartbeatSeconds = 0
    configure(&config)
    let server = Server(configuration: config)
    try server.start()
    return server
}
