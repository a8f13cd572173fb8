import ArgumentParser
import Dispatch
import Logging
import MicroSSE

#if canImport(Glibc)
    import Glibc
#endif

@main
struct MicroSSECommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "microsse",
        abstract: "An embeddable Server-Sent Events server on libmicrohttpd.",
        subcommands: [Demo.self, Serve.self])
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
func runUntilSignalled(_ server: Server, logger: Logger, onStart: () -> Void = {}) async throws {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    var sources: [DispatchSourceSignal] = []
    for sig in [SIGINT, SIGTERM] {
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            logger.info("signal \(sig): stopping")
            server.stop()
        }
        source.resume()
        sources.append(source)
    }
    try server.start()
    onStart()
    fflush(nil)  // the URL line must reach a pipe (tests, supervisors) at once
    await server.waitUntilStopped()
    sources.forEach { $0.cancel() }
}

func makeLogger(_ level: Logger.Level) -> Logger {
    var logger = Logger(label: "microsse")
    logger.logLevel = level
    return logger
}
