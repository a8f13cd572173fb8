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
        subcommands: [Demo.self, Serve.self, Doctor.self])
}

/// Options every subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(help: "Numeric address to bind.") var host = "127.0.0.1"
    @Option(help: "Port to bind (0 = any free port).") var port: UInt16 = 8080
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The write end of the self-pipe the signal handler writes the signal number to.
/// Written once before the handler is installed, then only read (by the handler).
nonisolated(unsafe) private var signalPipeWrite: Int32 = -1

/// Runs `server` until SIGINT or SIGTERM, then stops it gracefully (every stream ends cleanly).
///
/// A plain `sigaction` handler writes the signal to a pipe that a Dispatch read source drains:
/// it works whichever thread the kernel picks. (A Dispatch signal source with the signals set to
/// SIG_IGN loses a signal delivered to a thread that does not block it, e.g. libmicrohttpd's.)
/// The signals are also unblocked here, since a parent can hand down a mask that blocks them.
func runUntilSignalled(_ server: Server, logger: Logger, onStart: () -> Void = {}) async throws {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw MicroSSEError(.startFailed, "cannot create the signal pipe") }
    signalPipeWrite = fds[1]
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { sig in
        var byte = UInt8(truncatingIfNeeded: sig)
        _ = write(signalPipeWrite, &byte, 1)
    }
    sigemptyset(&action.sa_mask)
    action.sa_flags = SA_RESTART
    var unblock = sigset_t()
    sigemptyset(&unblock)
    for sig in [SIGINT, SIGTERM] {
        sigaction(sig, &action, nil)
        sigaddset(&unblock, sig)
    }
    pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
    let source = DispatchSource.makeReadSource(fileDescriptor: fds[0], queue: .global())
    source.setEventHandler {
        var byte: UInt8 = 0
        guard read(fds[0], &byte, 1) == 1 else { return }
        logger.info("signal \(byte): stopping")
        server.stop()
    }
    source.resume()
    try server.start()
    onStart()
    fflush(nil)  // the URL line must reach a pipe (tests, supervisors) at once
    await server.waitUntilStopped()
    source.cancel()
}

func makeLogger(_ level: Logger.Level) -> Logger {
    var logger = Logger(label: "microsse")
    logger.logLevel = level
    return logger
}
