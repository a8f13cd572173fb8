import ArgumentParser
import Dispatch
import Logging
import MicroSSE
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The classic libmicrohttpd SSE clock demo: a page at `/` and a per-connection clock at `/talk`.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the clock demo: a page at / and a clock stream at /talk.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Seconds between clock events.") var interval = 5

    func validate() throws {
        guard interval > 0 else { throw ValidationError("--interval must be at least 1 second") }
    }

    func run() async throws {
        let logger = makeLogger(common.logLevel)
        var config = ServerConfiguration()
        config.host = common.host
        config.port = common.port
        config.channelRoutes = false
        let server = Server(configuration: config, logger: logger)
        let clock = DemoClock()
        try server.addRoute("GET", "/") { _ in .html(demoPage) }
        try server.addStreamRoute("/talk") { request, client in
            // Requests for an event stream anywhere but /talk get 404 (the route table does that);
            // this one starts its own clock at once.
            clock.add(client)
        }
        server.onDisconnect { clock.remove($0) }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + .seconds(interval), repeating: .seconds(interval))
        timer.setEventHandler { clock.tick() }
        timer.resume()
        try await runUntilSignalled(server, logger: logger) {
            print(
                "Open http://\(common.host.contains(":") ? "[\(common.host)]" : common.host):\(server.port)/ in a browser"
            )
        }
        timer.cancel()
    }
}

/// Each connected client's own counter; every tick sends each client its next clock event.
final class DemoClock: Sendable {
    private let clients = Mutex<[Client: Int]>([:])

    func add(_ client: Client) {
        clients.withLock { $0[client] = 1 }
        send(to: client, id: 1)
    }

    func remove(_ client: Client) {
        _ = clients.withLock { $0.removeValue(forKey: client) }
    }

    func tick() {
        let due = clients.withLock { c -> [(Client, Int)] in
            for key in c.keys { c[key]! += 1 }
            return c.map { ($0.key, $0.value) }
        }
        for (client, id) in due { send(to: client, id: id) }
    }

    private func send(to client: Client, id: Int) {
        if let event = try? Event(data: "new server event \(localTime())", id: String(id)) {
            _ = try? client.send(event)
        }
    }
}

/// The local time as `HH:MM:SS` (what the classic demo prints).
func localTime() -> String {
    var now = time(nil)
    var parts = tm()
    localtime_r(&now, &parts)
    func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) "
        + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
}

let demoPage = """
    <!DOCTYPE html>
    <html>
    <head>
    <meta charset="utf-8">
    <title>MicroSSE demo</title>
    <style>
      body { font-family: system-ui, sans-serif; margin: 2em; }
      #state { font-weight: bold; }
      #messages li { font-family: ui-monospace, monospace; }
    </style>
    </head>
    <body>
    <h1>MicroSSE clock</h1>
    <p>Connection: <span id="state">connecting</span></p>
    <button id="stop">Stop Listening</button>
    <ul id="messages"></ul>
    <script>
      var source = new EventSource("/talk");
      var state = document.getElementById("state");
      source.addEventListener("open", function () { state.textContent = "open"; });
      source.addEventListener("error", function () {
        state.textContent = source.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
      });
      source.addEventListener("message", function (e) {
        var li = document.createElement("li");
        li.textContent = e.lastEventId + ": " + e.data;
        document.getElementById("messages").appendChild(li);
      });
      document.getElementById("stop").addEventListener("click", function () {
        source.close();
        state.textContent = "stopped";
      });
    </script>
    </body>
    </html>
    """
