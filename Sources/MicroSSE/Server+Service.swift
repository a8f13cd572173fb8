import ServiceLifecycle

/// A ``Server`` runs in a swift-service-lifecycle `ServiceGroup`: ``Server/run()`` starts it and
/// returns once it has stopped, and the group's graceful shutdown (SIGTERM, say) stops it the way
/// ``Server/stop()`` does, ending every stream with its final chunk.
///
/// ```swift
/// let server = Server(configuration: config, logger: logger)
/// let group = ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
extension Server: Service {}
