import Logging
import MicroSSE
import ServiceLifecycle

// MicroSSE in a swift-service-lifecycle ServiceGroup: SIGTERM (or SIGINT) stops the server
// gracefully, ending every stream with its final chunk, and `group.run()` returns.
var config = ServerConfiguration()
config.port = CommandLine.arguments.count > 1 ? UInt16(CommandLine.arguments[1]) ?? 8080 : 8080
let logger = Logger(label: "service-group")
let server = Server(configuration: config, logger: logger)

let group = ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
try await group.run()
print("stopped")
