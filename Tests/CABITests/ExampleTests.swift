// The C programs: the clock example (Examples/c), the error-path program, valgrind, the
// installed pkg-config file and the C example in docs/C-API.md.
import Foundation
import MicroSSE
import MicroSSETestSupport
import Testing

private let exampleSource = packageRoot.appendingPathComponent("Examples/c/clock.c").path

/// Checks that `events` hold, for each of `threads` threads, "thread T seq 0..<perThread" in order,
/// and that the server's ids increase.
private func checkPerThreadOrder(_ events: [ParsedEvent], threads: Int, perThread: Int) {
    var next = [Int](repeating: 0, count: threads)
    var lastID: UInt64 = 0
    for e in events {
        #expect(e.type == "tick")
        let parts = e.data.split(separator: " ")
        guard parts.count == 4, let t = Int(parts[1]), let seq = Int(parts[3]), (0..<threads).contains(t) else {
            Issue.record("unexpected event data '\(e.data)'")
            continue
        }
        #expect(seq == next[t], "thread \(t): got seq \(seq), expected \(next[t])")
        next[t] = seq + 1
        // A position the hub issued (`~1.0.EPOCH.OFFSET`, offset in base 36: docs/RESUME.md).
        if let id = e.id, id.hasPrefix("~1.0."),
            let offset = id.split(separator: ".").last.flatMap({ UInt64($0, radix: 36) })
        {
            #expect(offset > lastID, "ids must increase: \(id) after \(lastID)")
            lastID = offset
        } else {
            Issue.record("event without a position id: \(e)")
        }
    }
    #expect(next == [Int](repeating: perThread, count: threads))
}

@Suite(.serialized) struct ExampleTests {
    @Test("C example: a subscriber gets every event four C threads publish, in per-thread order")
    func fourPublisherThreads() throws {
        let dir = try temporaryDirectory("clock")
        defer { try? FileManager.default.removeItem(at: dir) }
        let clock = try buildProgram("clock", sources: [exampleSource], in: dir)
        let threads = 4
        let perThread = 500
        let app = try Background(
            clock.path, ["-p", "0", "-i", "1", "-t", "\(threads)", "-n", "\(perThread)"],
            stderr: dir.appendingPathComponent("stderr"))
        defer { _ = app.terminate() }
        let port = try app.port()

        let news = try EventStreamClient(port: port, path: "/events/news")
        #expect(news.status == 200)
        let events = try news.events(threads * perThread, timeout: 30)
        checkPerThreadOrder(events, threads: threads, perThread: perThread)
        #expect(app.line(containing: "published")?.hasPrefix("published \(threads * perThread) events") == true)

        // The rest of the classic demo: the page, and a private clock per /talk connection.
        let page = try httpRequest(port: port, path: "/")
        #expect(page.status == 200)
        #expect(page.header("Content-Type")?.hasPrefix("text/html") == true)
        #expect(page.text.contains("new EventSource(\"/talk\")") && page.text.contains("Stop Listening"))
        let talk = try EventStreamClient(port: port, path: "/talk")
        #expect(talk.head.header("Content-Type")?.hasPrefix("text/event-stream") == true)
        let ticks = try talk.events(2, timeout: 5)
        #expect(ticks.map(\.id) == ["1", "2"])
        #expect(ticks.allSatisfy { $0.data.hasPrefix("new server event ") })
        let other = try EventStreamClient(port: port, path: "/talk")
        #expect(try other.next()?.id == "1")  // each connection has its own clock
        other.close()

        #expect(app.terminate() == 0, "\(app.stderrText)")
        #expect(try news.waitForEnd(), "the channel stream must end with its final chunk")
        #expect(try talk.waitForEnd(), "the /talk stream must end with its final chunk")
    }

    @Test("C error paths: bad channel, CR/LF in id or event, invalid UTF-8, NULL → documented codes")
    func errorPathsFromC() throws {
        let dir = try temporaryDirectory("errors")
        defer { try? FileManager.default.removeItem(at: dir) }
        let exe = try buildProgram(
            "errors", sources: [packageRoot.appendingPathComponent("Examples/c/tests/errors.c").path], in: dir)
        let r = try run(exe.path, [])
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        #expect(r.out.hasSuffix("ok\n"), "\(r.out)")
    }

    @Test("C example under valgrind, against the library as shipped: its debug info read, no error, no leak")
    func valgrind() throws {
        let dir = try temporaryDirectory("valgrind")
        defer { try? FileManager.default.removeItem(at: dir) }
        // The shipped library, installed as `make install` does: stripped, its DWARF 4 debug info
        // in PREFIX/lib/debug/.build-id (where valgrind looks with --extra-debuginfo-path, as it
        // looks in /usr/lib/debug for the Debian package). Debian 12's valgrind gave up on the
        // whole process over the DWARF 5 of earlier builds; the test used to strip it first.
        let prefix = try installShipped("valgrind-prefix")
        defer { try? FileManager.default.removeItem(at: prefix) }
        let clock = try buildWithPkgConfig(
            URL(fileURLWithPath: exampleSource), name: "clock", in: dir,
            pkgConfigPath: prefix.appendingPathComponent("lib/pkgconfig").path, cflags: "-g -O0")
        let valgrind = try run("sh", ["-c", "command -v valgrind"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(!valgrind.isEmpty, "valgrind is not installed (make test-deps installs it)")
        let log = dir.appendingPathComponent("valgrind.log")
        let app = try Background(
            valgrind,
            [
                "--error-exitcode=99", "--leak-check=full", "--show-leak-kinds=definite",
                "--errors-for-leak-kinds=definite", "--log-file=\(log.path)", "-v",
                "--extra-debuginfo-path=\(prefix.appendingPathComponent("lib/debug").path)",
                clock.path, "-p", "0", "-i", "1", "-t", "4", "-n", "5",
            ], stderr: dir.appendingPathComponent("stderr"))
        defer { _ = app.terminate() }
        let port = try app.port()
        let news = try EventStreamClient(port: port, path: "/events/news", timeout: 30)
        checkPerThreadOrder(try news.events(20, timeout: 60), threads: 4, perThread: 5)
        #expect(try httpRequest(port: port, path: "/", timeout: 30).status == 200)
        let talk = try EventStreamClient(port: port, path: "/talk", timeout: 30)
        #expect(try talk.next(timeout: 30)?.id == "1")
        #expect(try httpRequest(port: port, path: "/stats", timeout: 30).status == 200)
        talk.close()  // a client that goes away: its disconnect callback frees the handle

        let status = app.terminate(timeout: 60)
        let report = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        let summary = report.split(separator: "\n").filter {
            $0.contains("ERROR SUMMARY") || $0.contains("definitely lost") || $0.contains("All heap blocks")
        }
        print("valgrind: " + summary.map { String($0.drop { $0 != " " }.dropFirst()) }.joined(separator: " | "))
        #expect(status == 0, "valgrind exit status \(String(describing: status)):\n\(report)")
        #expect(!report.contains("corrupted debuginfo") && !report.contains("Giving up"), "\(report)")
        let debugRead = report.split(separator: "\n").filter { $0.contains("/lib/debug/.build-id/") }
        #expect(!debugRead.isEmpty, "valgrind did not read the library's debug file:\n\(report)")
        #expect(report.contains("ERROR SUMMARY: 0 errors"), "\(report)")
        #expect(!report.contains("Invalid read") && !report.contains("Invalid write"), "\(report)")
        #expect(
            report.contains("definitely lost: 0 bytes") || report.contains("All heap blocks were freed"), "\(report)")
    }

    @Test("make install: header, libmicrosse.so and microsse.pc build a program outside the repo")
    func installedPkgConfig() throws {
        let prefix = try temporaryDirectory("prefix")
        let outside = try temporaryDirectory("outside")
        defer {
            try? FileManager.default.removeItem(at: prefix)
            try? FileManager.default.removeItem(at: outside)
        }
        let install = try run(
            packageRoot.appendingPathComponent("scripts/install-c.sh").path, [prefix.path, buildDirectory.path])
        try #require(install.status == 0, "\(install.err)")
        let real = prefix.appendingPathComponent("lib/libmicrosse.so.\(try headerVersion())").path
        let attributes = try FileManager.default.attributesOfItem(atPath: real)
        #expect(attributes[.type] as? FileAttributeType == .typeRegular, "libmicrosse.so.X.Y.Z must be a real file")
        #expect(try run("readelf", ["-d", real]).out.contains("Library soname: [libmicrosse.so.0]"))
        let lib = prefix.appendingPathComponent("lib/libmicrosse.so.0").path

        let app = outside.appendingPathComponent("app.c")
        try FileManager.default.copyItem(atPath: exampleSource, toPath: app.path)
        let env = ["PKG_CONFIG_PATH": prefix.appendingPathComponent("lib/pkgconfig").path]
        let build = try run(
            "sh",
            [
                "-c",
                "cc -std=c99 -Wall -Wextra -Werror -pedantic app.c $(pkg-config --cflags --libs microsse) -pthread -o app",
            ],
            in: outside, environment: env)
        try #require(build.status == 0, "\(build.err)")
        let ldd = try run("ldd", [outside.appendingPathComponent("app").path])
        #expect(ldd.out.contains("libmicrosse.so.0 => \(lib)"), "\(ldd.out)")

        let server = try Background(
            outside.appendingPathComponent("app").path, ["-p", "0"], stderr: outside.appendingPathComponent("stderr"))
        defer { _ = server.terminate() }
        let port = try server.port()
        #expect(try httpRequest(port: port, path: "/").status == 200)
        #expect(server.terminate() == 0)
    }

    @Test("the C program in the docs compiles and runs", arguments: ["docs/C-API.md", "README.md"])
    func documentedExample(_ path: String) throws {
        let doc = try String(
            contentsOf: packageRoot.appendingPathComponent(path), encoding: .utf8)
        guard let start = doc.range(of: "```c\n"),
            let end = doc.range(of: "```", range: start.upperBound..<doc.endIndex)
        else {
            Issue.record("\(path) has no ```c block")
            return
        }
        let dir = try temporaryDirectory("doc")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("hello.c")
        try String(doc[start.upperBound..<end.lowerBound]).write(to: file, atomically: true, encoding: .utf8)
        let exe = try buildProgram("hello", sources: [file.path], in: dir)
        let r = try run(exe.path, [])
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
    }
}
