// include/microsse.h against the library: it compiles strictly as C and C++, every function it
// declares is exported, and every export is checked against it by the compiler.
import Foundation
import MicroSSETestSupport
import Testing

/// The functions the header declares (every declaration starts with `MSSE_API`).
func headerFunctions() throws -> Set<String> {
    let header = try String(contentsOf: packageRoot.appendingPathComponent("include/microsse.h"), encoding: .utf8)
    var names = Set<String>()
    var rest = Substring(header)
    while let api = rest.range(of: "\nMSSE_API ") {
        rest = rest[api.upperBound...]
        guard let paren = rest.firstIndex(of: "(") else { break }
        let words = rest[..<paren].split(whereSeparator: { $0 == " " || $0 == "*" })
        if let name = words.last { names.insert(String(name)) }
    }
    return names
}

@Suite struct HeaderTests {
    @Test("header compiles alone as C99 with -Wall -Wextra -Werror -pedantic") func headerCompilesAsC() throws {
        let dir = try temporaryDirectory("c99")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("only.c")
        // Included twice: the include guard must hold.
        try "#include <microsse.h>\n#include <microsse.h>\nint main(void) { return MSSE_OK; }\n"
            .write(to: file, atomically: true, encoding: .utf8)
        for std in ["-std=c99", "-std=c11"] {
            let r = try run(
                "cc", [std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", "-I", includeDir, file.path])
            #expect(r.status == 0, "\(std): \(r.err)")
        }
    }

    @Test("header compiles, links and runs as C++ (extern \"C\")") func headerCompilesAsCpp() throws {
        let dir = try temporaryDirectory("cxx")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("main.cpp")
        try """
        #include <microsse.h>
        #include <cstring>
        int main() {
            msse_config cfg;
            msse_config_init(&cfg);
            msse_server *srv = nullptr;
            if (msse_server_create(&cfg, &srv) != MSSE_OK) return 1;
            int rc = msse_publish(srv, "news", nullptr, nullptr, "x", 1);
            msse_server_destroy(srv);
            return rc == MSSE_OK && std::strcmp(msse_version(), MSSE_VERSION) == 0 ? 0 : 2;
        }

        """.write(to: file, atomically: true, encoding: .utf8)
        for std in ["-std=c++11", "-std=c++17"] {
            let exe = try buildProgram(
                "cxx", sources: [file.path], in: dir, compiler: "c++",
                flags: [std, "-Wall", "-Wextra", "-Werror", "-pedantic"])
            let r = try run(exe.path, [])
            #expect(r.status == 0, "\(std): \(r.out) \(r.err)")
        }
    }

    @Test("every function in the header is exported by libmicrosse") func everyHeaderFunctionIsExported() throws {
        let declared = try headerFunctions()
        #expect(declared.count >= 38)
        let nm = try run("nm", ["-D", "--defined-only", libraryPath])
        try #require(nm.status == 0, "\(nm.err)")
        let exported = Set(
            nm.out.split(separator: "\n").compactMap { line -> String? in
                let f = line.split(separator: " ")
                return f.count == 3 && f[1] == "T" && f[2].hasPrefix("msse_") ? String(f[2]) : nil
            })
        #expect(declared.subtracting(exported).isEmpty, "not exported: \(declared.subtracting(exported).sorted())")
        // Other msse_ exports may only be the transport's C shim (msse_shim_*), never public API
        // that the header does not document.
        let undocumented = exported.subtracting(declared).filter { !$0.hasPrefix("msse_shim_") }
        #expect(undocumented.isEmpty, "exported but not in microsse.h: \(undocumented.sorted())")
        print("libmicrosse exports \(declared.count) msse_ functions declared in microsse.h")
    }

    @Test("every export is @c @implementation of a header prototype") func everyExportIsCheckedAgainstHeader() throws {
        let dir = packageRoot.appendingPathComponent("Sources/MicroSSECABI")
        var implemented = Set<String>()
        for file in try FileManager.default.contentsOfDirectory(atPath: dir.path) where file.hasSuffix(".swift") {
            let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            #expect(!text.contains("@_cdecl"), "\(file) uses @_cdecl, which checks nothing against the header")
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            for (i, line) in lines.enumerated() where line == "@c" || line.hasPrefix("@c ") || line.hasPrefix("@c(") {
                // `@c` alone does not look at the header; `@c @implementation` makes the compiler
                // check the Swift signature against the C prototype, and fail on a mismatch.
                guard line == "@c @implementation" else {
                    Issue.record("\(file):\(i + 1): '\(line)' must be '@c @implementation'")
                    continue
                }
                let decl = lines[i + 1]
                if let start = decl.range(of: "func "), let end = decl.firstIndex(of: "(") {
                    implemented.insert(String(decl[start.upperBound..<end]))
                }
            }
        }
        #expect(implemented == (try headerFunctions()))
    }

    @Test("a Swift export whose type differs from the header fails to compile") func mismatchedExportFailsToCompile()
        throws
    {
        let dir = try temporaryDirectory("mismatch")
        defer { try? FileManager.default.removeItem(at: dir) }
        let moduleMap = packageRoot.appendingPathComponent("Sources/CMicroSSE/module.modulemap").path
        func typecheck(_ source: String) throws -> ToolResult {
            let file = dir.appendingPathComponent("check.swift")
            try source.write(to: file, atomically: true, encoding: .utf8)
            return try run(
                "swiftc", ["-typecheck", "-swift-version", "6", "-Xcc", "-fmodule-map-file=\(moduleMap)", file.path])
        }
        let good = try typecheck(
            """
            public import CMicroSSE
            @c @implementation
            public func msse_publish(
                _ srv: OpaquePointer!, _ channel: UnsafePointer<CChar>!, _ event: UnsafePointer<CChar>!,
                _ id: UnsafePointer<CChar>!, _ data: UnsafePointer<CChar>!, _ len: Int
            ) -> Int32 { 0 }
            """)
        #expect(good.status == 0, "\(good.err)")
        // size_t len declared as UInt32, and a missing const: both must be compile errors.
        let bad = try typecheck(
            """
            public import CMicroSSE
            @c @implementation
            public func msse_publish(
                _ srv: OpaquePointer!, _ channel: UnsafePointer<CChar>!, _ event: UnsafePointer<CChar>!,
                _ id: UnsafePointer<CChar>!, _ data: UnsafePointer<CChar>!, _ len: UInt32
            ) -> Int32 { 0 }
            @c @implementation
            public func msse_client_send_comment(_ c: OpaquePointer!, _ text: UnsafeMutablePointer<CChar>!) -> Int32 { 0 }
            """)
        #expect(bad.status != 0)
        #expect(bad.err.contains("msse_publish") && bad.err.contains("declared by the header"), "\(bad.err)")
        #expect(bad.err.contains("msse_client_send_comment"), "\(bad.err)")
    }
}

let includeDir = packageRoot.appendingPathComponent("include").path
