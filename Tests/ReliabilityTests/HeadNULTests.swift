import MicroSSE
import MicroSSETestSupport
import Testing

/// A NUL that hides part of a request head from libmicrohttpd (found by the `headers` fuzz
/// target): a NUL in the last header's value followed by more bytes on its line, a line that
/// starts with a NUL (libmicrohttpd takes it for the empty line that ends the head), or a raw NUL
/// in the method or the request target (the string ends there; libmicrohttpd parses on); and a
/// bare CR, a space or another control byte in the request line, or a version that is not HTTP.
@Suite("Request heads with a NUL or a stray byte that hides bytes")
struct HeadNULTests {
    static let heads: [(String, [UInt8])] = [
        (
            "the fuzzer's input: NUL NUL NUL in the last value, then more of its line",
            Array("POST /events/t HTTP/1.1\r\nHost:\u{c8}".utf8) + [0, 0, 0]
                + Array("Expect: 100-continueZq\n\r\nabc".utf8)
        ),
        (
            "one NUL in the last value, then a hidden Content-Length",
            Array("POST /events/t HTTP/1.1\r\nHost: x\r\nX-A: a".utf8) + [0]
                + Array("Content-Length: 3\r\n\r\nabc".utf8)
        ),
        (
            "the fuzzer's third input: NULs ending a value before the next header",
            Array("POST /events/t HTTP/1.1\r\nHost:x \r\nExpc1t:e 00-".utf8) + [UInt8](repeating: 0, count: 8)
                + Array("\r\nContent-Length*: 3\r\n\r\n%00abc".utf8)
        ),
        (
            "one NUL ending the last value",
            Array("POST /events/t HTTP/1.1\r\nHost: x\r\nContent-Length: 3".utf8) + [0] + Array("\r\n\r\nabc".utf8)
        ),
        (
            "a line starting with NUL after the headers",
            Array("POST /events/t HTTP/1.1\r\nHost: x\r\n".utf8) + [0]
                + Array("Transfer-Encoding: chunked\r\n\r\n".utf8)
        ),
        (
            "the fuzzer's second input: a raw NUL at the end of the target",
            Array("HEAD /events/x".utf8) + [0] + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        ),
        (
            "the fuzzer's fourth input: NULs after the method",
            Array("GET".utf8) + [UInt8](repeating: 0, count: 14)
                + Array(" /events?cha[nnel=a&channel=b HTTP/1.1\r\nH5st: x\r\n\r\n".utf8)
        ),
        (
            "a raw NUL in the target hiding a query from the path",
            Array("POST /events/t".utf8) + [0]
                + Array("?event=x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".utf8)
        ),
        (
            "the fuzzer's sixth input: a bare CR inside the request line",
            Array(
                "GET /events?channel=a&chel=b HRTP/1.1\rPOST /events/t HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        ),
        ("a space in the target", Array("GET /events/a b HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
        ("a version that is not HTTP", Array("GET /events/a HRTP/1.1\r\nHost: x\r\n\r\n".utf8)),
        (
            "a line starting with NUL and no headers",
            Array("POST /events/t HTTP/1.1\r\n".utf8) + [0] + Array("Content-Length: 3\r\n\r\nabc".utf8)
        ),
    ]

    @Test(
        "each gets 400 and publishes nothing; the same heads without the NULs are served (with and without timeouts)",
        arguments: [30, 0])
    func hiddenBytesRefused(connectionTimeout: Int) throws {
        let server = try makeServer {
            $0.publishing = true
            $0.connectionTimeoutSeconds = connectionTimeout
        }
        defer { server.stop() }
        for (name, bytes) in Self.heads {
            let (status, c) = try rawRequest(port: server.port, bytes)
            c.close()
            #expect(status == 400, "\(name): \(String(describing: status))")
        }
        #expect(server.statistics.published == 0)
        let plain = "POST /events/t HTTP/1.1\r\nHost: x\r\nX-A: a\r\nContent-Length: 3\r\n\r\nabc"
        #expect(try rawStatus(port: server.port, plain) == 202)
        #expect(try rawStatus(port: server.port, "GET /healthz HTTP/1.1\r\n\r\n") == 200)
        #expect(try rawStatus(port: server.port, "GET /healthz HTTP/1.1\n\n") == 200)
    }
}
