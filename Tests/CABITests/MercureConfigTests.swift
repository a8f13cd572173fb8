import CMicroSSE
import Foundation
import MicroSSECABI
import MicroSSETestSupport
import Testing

/// `msse_config`'s Mercure fields: a C program serves the hub, real clients publish and
/// subscribe over loopback.
@Suite("C ABI: msse_config Mercure fields")
struct MercureConfigTests {
    /// A hub from C: draft-08 (issuer and audience set) or, with "07", draft-07; the HS256 secret
    /// is argv[2]. Prints the port, serves until SIGTERM, then destroys the server.
    static let program = #"""
        #define _POSIX_C_SOURCE 200809L
        #include <microsse.h>
        #include <pthread.h>
        #include <signal.h>
        #include <stdio.h>
        #include <string.h>

        int main(int argc, char **argv) {
            const char *issuers[] = {"https://app.example"};
            msse_config cfg;
            msse_server *srv = NULL;
            sigset_t set;
            int sig = 0;
            if (argc != 3) return 2;
            sigemptyset(&set);
            sigaddset(&set, SIGTERM);
            pthread_sigmask(SIG_BLOCK, &set, NULL);
            msse_config_init(&cfg);
            cfg.port = 0;
            cfg.heartbeat_seconds = 0;
            cfg.jwt_secret = argv[2];
            cfg.mercure = 1;
            if (strcmp(argv[1], "07") == 0) {
                cfg.mercure_legacy = 1;
            } else {
                cfg.mercure_issuers = issuers;
                cfg.mercure_issuer_count = 1;
                cfg.mercure_audience = "https://hub.example/.well-known/mercure";
            }
            if (msse_server_create(&cfg, &srv) != MSSE_OK || msse_server_start(srv) != MSSE_OK) {
                fprintf(stderr, "hub: %s\n", msse_server_errmsg(srv));
                msse_server_destroy(srv);
                return 1;
            }
            printf("listening on http://127.0.0.1:%u/\n", (unsigned)msse_server_port(srv));
            fflush(stdout);
            sigwait(&set, &sig);
            msse_server_destroy(srv);
            return 0;
        }
        """#

    private func hub(_ revision: String, in dir: URL) throws -> Background {
        let source = dir.appendingPathComponent("hub.c")
        try Self.program.write(to: source, atomically: true, encoding: .utf8)
        let exe = try buildProgram("hub", sources: [source.path], in: dir)
        return try Background(exe.path, [revision, TokenMint.secret], stderr: dir.appendingPathComponent("err"))
    }

    private func publish(_ port: UInt16, _ body: String, token: String) throws -> SimpleResponse {
        try httpRequest(
            port: port, method: "POST", path: "/.well-known/mercure",
            headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", "Bearer \(token)")],
            body: Array(body.utf8))
    }

    @Test("draft-08 from C: an issuer's at+jwt publishes, a match_urlpattern subscriber receives it")
    func draft08() throws {
        let dir = try temporaryDirectory("mercure08")
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try hub("08", in: dir)
        defer { _ = server.terminate() }
        let port = try server.port()
        let stream = try EventStreamClient(
            port: port, path: "/.well-known/mercure?match_urlpattern=https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid")
        defer { stream.close() }
        #expect(stream.status == 200)
        let details =
            #"[{"type":"https://mercure.rocks/authorization-detail","actions":["publish"],"topics":[{"match":"https://example.com/books/1"}]}]"#
        let claims =
            #"{"iss":"https://app.example","aud":"https://hub.example/.well-known/mercure","exp":\#(TokenMint.now + 600),"authorization_details":\#(details)}"#
        let token = TokenMint.hs256(claims, header: #"{"alg":"HS256","typ":"at+jwt"}"#)
        let r = try publish(port, "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&data=from+C", token: token)
        #expect(r.status == 200, "\(r.status) \(r.text)")
        let e = try #require(try stream.next())
        #expect(e.data == "from C" && e.id == r.text)
        // The issuer is checked: another one's token is refused.
        let stranger = TokenMint.hs256(
            claims.replacingOccurrences(of: "app.example", with: "evil.example"),
            header: #"{"alg":"HS256","typ":"at+jwt"}"#)
        #expect(try publish(port, "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1", token: stranger).status == 401)
        #expect(server.terminate() == 0)
    }

    @Test("draft-07 from C (mercure_legacy): a mercure-claim token publishes, a topic= subscriber receives")
    func draft07() throws {
        let dir = try temporaryDirectory("mercure07")
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try hub("07", in: dir)
        defer { _ = server.terminate() }
        let port = try server.port()
        let stream = try EventStreamClient(port: port, path: "/.well-known/mercure?topic=news")
        defer { stream.close() }
        #expect(stream.status == 200)
        let token = TokenMint.hs256(#"{"mercure":{"publish":["*"]}}"#, header: #"{"alg":"HS256"}"#)
        let r = try publish(port, "topic=news&data=legacy", token: token)
        #expect(r.status == 200, "\(r.status) \(r.text)")
        #expect(try stream.next()?.data == "legacy")
        #expect(server.terminate() == 0)
    }

    @Test("defaults off; an older layout never reads them; refusals name the problem")
    func defaultsAndRefusals() throws {
        var initialized = msse_config()
        msse_config_init(&initialized)
        #expect(initialized.mercure == 0 && initialized.mercure_legacy == 0 && initialized.mercure_subscriptions == 0)
        #expect(initialized.mercure_issuers == nil && initialized.mercure_issuer_count == 0)
        #expect(initialized.mercure_audience == nil)

        // A caller compiled before the Mercure fields: what lies past its struct is not read.
        var older = testConfig()
        older.size = MemoryLayout<msse_config>.offset(of: \msse_config.mercure)!
        older.mercure = 1  // past `size`: ignored
        let server = try startServer(&older)
        defer { msse_server_destroy(server) }
        let r = try httpRequest(port: msse_server_port(server), path: "/.well-known/mercure?match=x")
        #expect(r.status == 404)

        #expect(createFailure { $0.mercure = 1 }?.contains("needs jwt") == true)
        let noIssuer = "0123456789abcdef0123456789abcdef".withCString { secret in
            createFailure {
                $0.mercure = 1
                $0.jwt_secret = secret
            }
        }
        #expect(noIssuer?.contains("--mercure-issuer") == true)
        let counted = createFailure {
            $0.mercure = 1
            $0.mercure_issuer_count = 1
        }
        #expect(counted?.contains("mercure_issuers is NULL") == true)
        let subscriptions = "0123456789abcdef0123456789abcdef".withCString { secret in
            createFailure {
                $0.mercure = 1
                $0.mercure_legacy = 1
                $0.mercure_subscriptions = 1
                $0.jwt_secret = secret
            }
        }
        #expect(subscriptions == nil)  // active subscriptions are served
    }
}
