// The library and the program as shipped: the release build `make lib CONFIG=release` makes (which
// `make test` runs first), installed by scripts/install-c.sh as `make install` does. It exports
// the header's functions and nothing else, and runs with nothing of the Swift toolchain around.
import Foundation
import MicroSSETestSupport
import Testing

/// Where `make lib CONFIG=release` puts the shipped build.
let shippedDirectory = packageRoot.appendingPathComponent(".build-release-c/release")

/// The header's version, e.g. "0.1.0": the installed library is libmicrosse.so.VERSION.
func headerVersion() throws -> String {
    let header = try String(
        contentsOf: packageRoot.appendingPathComponent("include/microsse.h"), encoding: .utf8)
    let line = try #require(header.split(separator: "\n").first { $0.hasPrefix("#define MSSE_VERSION \"") })
    return String(line.split(separator: "\"")[1])
}

/// Installs the shipped build into a fresh temporary PREFIX, as `make install PREFIX=...` does.
func installShipped(_ name: String) throws -> URL {
    let built = shippedDirectory.appendingPathComponent("libMicroSSEC.so").path
    try #require(
        FileManager.default.fileExists(atPath: built),
        "no shipped build at \(built): run `make lib CONFIG=release` (`make test` does)")
    let prefix = try temporaryDirectory(name)
    let install = try run(
        packageRoot.appendingPathComponent("scripts/install-c.sh").path, [prefix.path, shippedDirectory.path])
    try #require(install.status == 0, "install-c.sh failed: \(install.err)")
    return prefix
}

/// Runs `command` under `env -i` (an empty environment) with only `LD_LIBRARY_PATH` set.
func runBare(_ command: [String], libraryPath: String) throws -> ToolResult {
    try run("env", ["-i", "LD_LIBRARY_PATH=\(libraryPath)"] + command)
}

/// Builds `source` outside the repository with the installed microsse.pc, as the docs say.
func buildWithPkgConfig(
    _ source: URL, name: String, in dir: URL, pkgConfigPath: String, cflags: String = ""
) throws -> URL {
    let build = try run(
        "sh",
        [
            "-c",
            "cc -std=c99 -Wall -Wextra -Werror -pedantic \(cflags) \"$1\" $(pkg-config --cflags --libs microsse) -pthread -o \"$2\"",
            "sh", source.path, name,
        ],
        in: dir, environment: ["PKG_CONFIG_PATH": pkgConfigPath])
    try #require(build.status == 0, "cc failed for \(source.lastPathComponent): \(build.err)")
    return dir.appendingPathComponent(name)
}

/// The functions include/microsse.h declares, as the C compiler lists them (gcc -aux-info writes
/// one line per declaration with its file): independent of the version script's own reading.
func declaredFunctions() throws -> Set<String> {
    let dir = try temporaryDirectory("aux")
    defer { try? FileManager.default.removeItem(at: dir) }
    let header = packageRoot.appendingPathComponent("include/microsse.h").path
    let aux = dir.appendingPathComponent("aux.txt")
    let r = try run("gcc", ["-x", "c", "-S", "-o", "/dev/null", "-aux-info", aux.path, header])
    try #require(r.status == 0, "gcc -aux-info failed: \(r.err)")
    let lines = try String(contentsOf: aux, encoding: .utf8).split(separator: "\n")
    var names = Set<String>()
    for line in lines where line.contains("/include/microsse.h:") {
        // "/* .../include/microsse.h:81:NC */ extern const char *msse_version (void);"
        guard let close = line.range(of: "*/"),
            let paren = line.range(of: " (", range: close.upperBound..<line.endIndex)
        else { continue }
        let head = line[close.upperBound..<paren.lowerBound]
        let name = head.reversed().prefix { $0.isLetter || $0.isNumber || $0 == "_" }.reversed()
        names.insert(String(name))
    }
    return names
}

@Suite(.serialized) struct ShippedTests {
    @Test("the shipped library exports exactly the header's functions, with a versioned soname and no RUNPATH")
    func exportsExactlyTheHeader() throws {
        let prefix = try installShipped("symbols")
        defer { try? FileManager.default.removeItem(at: prefix) }
        let lib = prefix.appendingPathComponent("lib/libmicrosse.so.\(try headerVersion())").path
        let nm = try run("nm", ["-D", "--defined-only", lib])
        try #require(nm.status == 0, "nm failed: \(nm.err)")
        let exported = nm.out.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
        let declared = try declaredFunctions()
        #expect(declared.count > 30, "gcc -aux-info found only \(declared.count) functions in the header")
        #expect(exported.count == Set(exported).count, "a symbol exported twice: \(exported)")
        #expect(
            Set(exported) == declared,
            "exported, not declared: \(Set(exported).subtracting(declared).sorted().prefix(20)); declared, not exported: \(declared.subtracting(exported).sorted())"
        )
        print("shipped library: \(exported.count) exported symbols, header: \(declared.count) functions")

        let dynamic = try run("readelf", ["-d", lib]).out
        #expect(dynamic.contains("Library soname: [libmicrosse.so.0]"), "\(dynamic)")
        #expect(!dynamic.contains("RUNPATH") && !dynamic.contains("RPATH"), "\(dynamic)")
        #expect(!dynamic.lowercased().contains("swift"), "\(dynamic)")
        // Stripped, with its debug info beside it under lib/debug/.build-id, named by its build id.
        let sections = try run("readelf", ["-S", "-W", lib]).out
        #expect(!sections.contains(".debug_info") && sections.contains(".gnu_debuglink"), "\(sections)")
        let link = try FileManager.default.destinationOfSymbolicLink(
            atPath: prefix.appendingPathComponent("lib/libmicrosse.so.0").path)
        #expect(link == "libmicrosse.so.\(try headerVersion())")
        #expect(
            try FileManager.default.destinationOfSymbolicLink(
                atPath: prefix.appendingPathComponent("lib/libmicrosse.so").path) == "libmicrosse.so.0")
    }

    @Test("shipped alone: the README's program, clock.c and microsse run from a moved copy under env -i")
    func shipsAlone() throws {
        let installed = try installShipped("ship-installed")
        let work = try temporaryDirectory("ship-work")
        let moved = try temporaryDirectory("ship-moved")
        defer {
            for dir in [installed, work, moved] { try? FileManager.default.removeItem(at: dir) }
        }
        // Built against the installed tree with pkg-config, as a C user would.
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let start = try #require(readme.range(of: "```c\n"), "README.md has no ```c block")
        let end = try #require(readme.range(of: "```", range: start.upperBound..<readme.endIndex))
        let readmeSource = work.appendingPathComponent("readme.c")
        try String(readme[start.upperBound..<end.lowerBound]).write(
            to: readmeSource, atomically: true, encoding: .utf8)
        let pc = installed.appendingPathComponent("lib/pkgconfig").path
        let readmeProgram = try buildWithPkgConfig(readmeSource, name: "readme", in: work, pkgConfigPath: pc)
        let clock = try buildWithPkgConfig(
            packageRoot.appendingPathComponent("Examples/c/clock.c"), name: "clock", in: work, pkgConfigPath: pc)

        // The tree moves: the programs' rpath (the installed lib/) leads nowhere, and only
        // LD_LIBRARY_PATH (the moved copy) can find the library; the toolchain's is never named.
        try FileManager.default.removeItem(at: moved)
        try FileManager.default.moveItem(at: installed, to: moved)
        let libDir = moved.appendingPathComponent("lib").path
        let microsse = moved.appendingPathComponent("bin/microsse").path
        let library = moved.appendingPathComponent("lib/libmicrosse.so.0").path
        for file in [library, readmeProgram.path, clock.path, microsse] {
            let ldd = try runBare(["/usr/bin/ldd", file], libraryPath: libDir)
            #expect(ldd.status == 0, "ldd \(file): \(ldd.err)")
            #expect(!ldd.out.lowercased().contains("swift"), "ldd \(file):\n\(ldd.out)")
            #expect(!ldd.out.contains("not found"), "ldd \(file):\n\(ldd.out)")
            if file != library && file != microsse {
                #expect(ldd.out.contains("libmicrosse.so.0 => \(library)"), "ldd \(file):\n\(ldd.out)")
            }
        }

        let r = try runBare([readmeProgram.path], libraryPath: libDir)
        #expect(r.status == 0, "README program: \(r.out)\n\(r.err)")

        // clock.c serves: a subscriber of "news" gets the events its thread publishes.
        let app = try Background(
            "/usr/bin/env",
            ["-i", "LD_LIBRARY_PATH=\(libDir)", clock.path, "-p", "0", "-i", "1", "-t", "1", "-n", "3"],
            stderr: work.appendingPathComponent("clock.err"))
        defer { _ = app.terminate() }
        let port = try app.port()
        let news = try EventStreamClient(port: port, path: "/events/news")
        #expect(news.status == 200)
        let events = try news.events(3, timeout: 30)
        #expect(events.map(\.data) == ["thread 0 seq 0", "thread 0 seq 1", "thread 0 seq 2"])
        #expect(app.terminate() == 0, "\(app.stderrText)")

        // microsse serves: an event published over HTTP reaches a subscriber.
        let hub = try Background(
            "/usr/bin/env", ["-i", microsse, "serve", "--host", "127.0.0.1", "--port", "0"],
            stderr: work.appendingPathComponent("hub.err"))
        defer { _ = hub.terminate() }
        let hubLine = try #require(hub.line(containing: "/events/"), "microsse printed no URL: \(hub.stderrText)")
        let hubPort = try #require(
            hubLine.split(separator: ":").dropFirst(2).first.flatMap { UInt16($0.prefix { $0.isNumber }) },
            "no port in '\(hubLine)'")
        let stream = try EventStreamClient(port: hubPort, path: "/events/news")
        #expect(stream.status == 200)
        let published = try httpRequest(
            port: hubPort, method: "POST", path: "/events/news", body: Array("shipped".utf8))
        #expect(published.status == 202, "publish: \(published.status) \(published.text)")
        #expect(try stream.next(timeout: 10)?.data == "shipped")
        #expect(hub.terminate() == 0, "\(hub.stderrText)")
    }
}
