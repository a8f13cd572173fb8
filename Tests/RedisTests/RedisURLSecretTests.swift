// A Redis URL's password never appears in the errors its parsing gives, whether the URL comes
// from Swift, the command line or MICROSSE_REDIS.
import Foundation
import MicroSSE
import MicroSSERedis
import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The password every URL below carries.
private let secret = "s3cretPW"

/// One URL for each way parsing can fail, with a piece of the reason it gives.
private let badURLs: [(url: String, reason: String)] = [
    ("redis://:\(secret)@h?workers=0", "workers must be 1-64"),
    ("redis://:\(secret)@h?queue=0", "queue must be 1-1000000"),
    ("redis://:\(secret)@h?wait=101", "wait must be 0-100"),
    ("redis://:\(secret)@h?wait=all", "wait=all needs redis-sentinel://"),
    ("redis://:\(secret)@h?waitTimeout=0", "waitTimeout must be 1-10000"),
    ("redis://:\(secret)@h?nope=1", "unknown Redis URL option 'nope'"),
    ("redis://:\(secret)@h:99999", "port must be 1-65535"),
    ("redis://:\(secret)@h:x", "port must be 1-65535"),
    ("redis://:\(secret)@h/0/1", "too many '/'"),
    ("redis://:\(secret)@h/db", "database must be a number"),
    ("redis://:\(secret)@", "no host"),
    ("redis-sentinel://:\(secret)@h:26379", "no master name"),
    ("redis-sentinel://:\(secret)@h:0/m", "port must be 1-65535"),
    ("rediss://:\(secret)@h", "must start with redis://"),
    // A password holding '?', '&' and '/' is all password: no option or path is read from it.
    ("redis://:a?b&\(secret)/x@h?workers=99", "workers must be 1-64"),
    ("redis://user:\(secret)@h:70000", "port must be 1-65535"),
]

@Suite("Redis URL errors keep the password out")
struct RedisURLSecretTests {
    @Test("each parse error gives its reason and the URL without the password")
    func swiftErrors() throws {
        for (url, reason) in badURLs {
            do {
                _ = try RedisURL(url)
                Issue.record("\(reason): '\(url)' was accepted")
            } catch {
                #expect(error.message.contains(reason), "\(error.message)")
                #expect(!error.message.contains(secret), "\(error.message)")
                #expect(!error.message.contains("a?b"), "\(error.message)")
                #expect(error.message.contains(":***@"), "\(error.message)")
            }
        }
    }

    @Test("a password with '?', '&' and '/' is parsed whole")
    func passwordCharacters() throws {
        let url = try RedisURL("redis://:a?b&c/d@h:7000/3?workers=4")
        #expect(url.password == "a?b&c/d")
        #expect(url.host == "h" && url.port == 7000 && url.database == 3 && url.workers == 4)
        #expect(RedisURL.redacted("redis://:p@h") == "redis://:***@h")
        #expect(RedisURL.redacted("redis://h:1/0") == "redis://h:1/0")
    }

    @Test("microsse serve: stderr names the error, never the password (--redis and MICROSSE_REDIS)")
    func binaryErrors() throws {
        for (url, reason) in badURLs.prefix(4) + badURLs.suffix(3) {
            for fromEnvironment in [false, true] {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: microsseExecutable())
                p.arguments = ["serve", "--port", "0"] + (fromEnvironment ? [] : ["--redis", url])
                var environment = ProcessInfo.processInfo.environment
                environment["MICROSSE_REDIS"] = fromEnvironment ? url : nil
                p.environment = environment
                let errors = Pipe()
                p.standardOutput = FileHandle.nullDevice
                p.standardError = errors
                try p.run()
                // One error line fits in the pipe; a hub that started after all is stopped.
                let exited = eventually(timeout: 30) { !p.isRunning }
                if !exited { p.terminate() }
                p.waitUntilExit()
                let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                #expect(exited, "\(url) started a hub")
                #expect(p.terminationStatus != 0, "\(url) started a hub")
                #expect(text.contains(reason), "\(text)")
                #expect(!text.contains(secret), "\(text)")
            }
        }
    }
}
