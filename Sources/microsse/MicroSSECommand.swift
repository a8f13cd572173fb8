import ArgumentParser
import Logging
import MicroSSE
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

@main
struct MicroSSECommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "microsse",
        abstract: "An embeddable Server-Sent Events server on libmicrohttpd.",
        subcommands: [Demo.self, Serve.self, Doctor.self])

    /// Parses the command line with the `MICROSSE_*` environment variables added (flags win),
    /// then runs the command.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        await main(EnvironmentOptions.apply(to: arguments, environment: EnvironmentOptions.current))
    }
}

/// Options every subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(help: "Numeric address to bind.") var host = "127.0.0.1"
    @Option(help: "Port to bind (0 = any free port).") var port: UInt16 = 8080
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Runs `server` until SIGINT or SIGTERM, then stops it gracefully (every stream ends cleanly).
///
/// A swift-service-lifecycle `ServiceGroup` installs the signal handlers before the server
/// starts, so `onStart` (which prints the URL a supervisor or test waits for) runs only once a
/// signal can no longer kill the process outright.
func runUntilSignalled(_ server: Server, logger: Logger, onStart: @escaping @Sendable () -> Void = {}) async throws {
    let group = ServiceGroup(
        services: [StartedServer(server: server, onStart: onStart)], gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger)
    try await group.run()
}

/// ``Server/run()`` with a callback once the port is bound.
private struct StartedServer: Service {
    let server: Server
    let onStart: @Sendable () -> Void

    func run() async throws {
        try server.start()
        onStart()
        fflush(nil)  // the URL line must reach a pipe (tests, supervisors) at once
        await withGracefulShutdownHandler {
            await server.waitUntilStopped()
        } onGracefulShutdown: {
            server.stop()
        }
    }
}

func makeLogger(_ level: Logger.Level) -> Logger {
    var logger = Logger(label: "microsse")
    logger.logLevel = level
    return logger
}
