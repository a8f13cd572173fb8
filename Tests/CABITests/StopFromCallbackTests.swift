// msse_server_stop and msse_server_destroy called from inside the server's own callbacks (a
// route, the authorizer, a disconnect callback): the natural `/shutdown` route of an embedder.
// libmicrohttpd's stop joins its polling threads, and these callbacks run on one of them, so a
// stop there used to abort the process ("Failed to join a thread").
import Foundation
import MicroSSETestSupport
import Testing

@Suite("C: stopping and destroying from inside a callback")
struct StopFromCallbackTests {
    /// The C program: `stopper MODE`, MODE one of route-stop, authorizer-stop, disconnect-stop,
    /// route-destroy. It prints its URL, waits (at most 30 s) for the callback to have stopped or
    /// destroyed the server, then prints what it saw and "ok".
    static let source = #"""
        #include <microsse.h>
        #include <stdio.h>
        #include <string.h>
        #include <time.h>

        static msse_server *srv;
        static const char *mode;
        static volatile int called, rc_in_callback = 99, freed;

        static void stop_or_destroy(void) {
            if (strcmp(mode, "route-destroy") == 0) {
                msse_server_destroy(srv); /* returns at once; the rest happens once this returns */
                rc_in_callback = 0;
            } else {
                rc_in_callback = msse_server_stop(srv);
            }
            __atomic_store_n(&called, 1, __ATOMIC_SEQ_CST);
        }

        static void route(void *user, const msse_request *req, msse_response *res) {
            (void)user; (void)req;
            msse_response_set_body(res, "bye\n", 4);
            stop_or_destroy();
        }

        static int authorize(void *user, const msse_request *req, int access, const char *const *names,
                             size_t count) {
            (void)user; (void)access; (void)names; (void)count;
            if (strcmp(msse_request_path(req), "/stats") == 0) stop_or_destroy();
            return 0;
        }

        static void disconnected(void *user, msse_client *client) {
            (void)user; (void)client;
            if (!__atomic_load_n(&called, __ATOMIC_SEQ_CST)) stop_or_destroy();
        }

        static void free_user(void *user) { (void)user; __atomic_store_n(&freed, 1, __ATOMIC_SEQ_CST); }

        static int wait_for(volatile int *flag) {
            struct timespec tick = {0, 10 * 1000 * 1000};
            for (int i = 0; i < 3000; i++) {
                if (__atomic_load_n(flag, __ATOMIC_SEQ_CST)) return 1;
                nanosleep(&tick, NULL);
            }
            return 0;
        }

        int main(int argc, char **argv) {
            if (argc < 2) return 2;
            mode = argv[1];
            msse_config cfg;
            msse_config_init(&cfg);
            cfg.port = 0;
            cfg.heartbeat_seconds = 0;
            if (msse_server_create(&cfg, &srv) != MSSE_OK) return 3;
            if (strncmp(mode, "route", 5) == 0)
                msse_server_add_route(srv, "GET", "/shutdown", route, NULL, free_user);
            else if (strcmp(mode, "authorizer-stop") == 0)
                msse_server_set_authorizer(srv, authorize, NULL, free_user);
            else
                msse_server_on_disconnect(srv, disconnected, NULL, free_user);
            if (msse_server_start(srv) != MSSE_OK) return 4;
            printf("listening on http://127.0.0.1:%u/\n", (unsigned)msse_server_port(srv));
            fflush(stdout);
            if (!wait_for(&called)) return 5;
            printf("callback returned %d\n", rc_in_callback);
            if (strcmp(mode, "route-destroy") == 0) {
                /* The server is freed on a thread of its own once stopped: free_fn says so. */
                if (!wait_for(&freed)) return 6;
            } else {
                /* Waits for the stop the callback began; then the port is released. */
                if (msse_server_stop(srv) != MSSE_OK) return 7;
                if (msse_server_port(srv) != 0) return 8;
                msse_server_destroy(srv);
                if (!freed) return 9;
            }
            printf("ok\n");
            fflush(stdout);
            return 0;
        }
        """#

    static func build() throws -> (URL, URL) {
        let dir = try temporaryDirectory("stopper")
        let file = dir.appendingPathComponent("stopper.c")
        try source.write(to: file, atomically: true, encoding: .utf8)
        return (dir, try buildProgram("stopper", sources: [file.path], in: dir))
    }

    /// Runs the program in `mode`, lets `trigger` make the callback run, and checks it exits 0.
    func check(_ mode: String, trigger: (UInt16) throws -> Void) throws {
        let (dir, exe) = try Self.build()
        defer { try? FileManager.default.removeItem(at: dir) }
        let app = try Background(exe.path, [mode], stderr: dir.appendingPathComponent("stderr"))
        defer { _ = app.terminate() }
        let port = try app.port()
        try trigger(port)
        #expect(eventually(timeout: 40) { !app.process.isRunning }, "\(mode): still running")
        // A process killed by SIGABRT ends with reason .uncaughtSignal and status 6.
        #expect(app.process.terminationReason == .exit, "\(mode): killed by signal \(app.process.terminationStatus)")
        #expect(app.process.terminationStatus == 0, "\(mode): exit \(app.process.terminationStatus)")
        #expect(app.line(containing: "callback returned") == "callback returned 0", "\(mode)")
        #expect(app.line(containing: "ok") == "ok", "\(mode): \(app.stderrText)")
    }

    @Test("msse_server_stop from a route's callback stops the server; the process lives on")
    func stopFromRoute() throws {
        try check("route-stop") { port in _ = try? httpRequest(port: port, path: "/shutdown") }
    }

    @Test("msse_server_stop from the authorizer stops the server; the process lives on")
    func stopFromAuthorizer() throws {
        try check("authorizer-stop") { port in _ = try? httpRequest(port: port, path: "/stats") }
    }

    @Test("msse_server_stop from a disconnect callback stops the server; the process lives on")
    func stopFromDisconnect() throws {
        try check("disconnect-stop") { port in
            let stream = try EventStreamClient(port: port, path: "/events/news")
            #expect(stream.status == 200)
            stream.close()
        }
    }

    @Test("msse_server_destroy from a route's callback frees the server once stopped; the process lives on")
    func destroyFromRoute() throws {
        try check("route-destroy") { port in _ = try? httpRequest(port: port, path: "/shutdown") }
    }
}
