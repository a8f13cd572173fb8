import MicroSSETestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("microsse demo")
struct DemoTests {
    @Test("the page at / has the EventSource, the open listener and the Stop Listening button")
    func page() throws {
        let demo = try ServerProcess(["demo", "--port", "0", "--interval", "1"])
        let page = try httpRequest(port: demo.port, path: "/")
        #expect(page.status == 200)
        #expect(page.header("Content-Type") == "text/html; charset=utf-8")
        #expect(page.text.contains("new EventSource(\"/talk\")"))
        #expect(page.text.contains("addEventListener(\"open\""))
        #expect(page.text.contains("Stop Listening"))
        #expect(page.text.contains("source.close()"))
        demo.signal(SIGINT)
        #expect(demo.waitForExit() == 0)
    }

    @Test("/talk streams the clock at once, then every interval, with increasing ids")
    func talk() throws {
        let demo = try ServerProcess(["demo", "--port", "0", "--interval", "1"])
        let stream = try EventStreamClient(port: demo.port, path: "/talk")
        #expect(stream.status == 200)
        #expect(stream.head.header("Content-Type") == "text/event-stream; charset=utf-8")
        let first = try #require(try stream.next(timeout: 0.9))  // at once, before the first tick
        #expect(first.data.hasPrefix("new server event "))
        #expect(first.lastEventID == "1")
        let more = try stream.events(2, timeout: 5)
        #expect(more.map(\.lastEventID) == ["2", "3"])
        #expect(more.allSatisfy { $0.data.hasPrefix("new server event ") })
        demo.signal(SIGTERM)
        #expect(try stream.waitForEnd(), "stream did not end with the final chunk on SIGTERM")
        #expect(demo.waitForExit() == 0)
    }

    @Test("other event-stream requests get 404")
    func otherStreams404() throws {
        let demo = try ServerProcess(["demo", "--port", "0"])
        let other = try EventStreamClient(port: demo.port, path: "/events/news")
        #expect(other.status == 404)
        let nope = try EventStreamClient(port: demo.port, path: "/nope")
        #expect(nope.status == 404)
        demo.signal(SIGINT)
        #expect(demo.waitForExit() == 0)
    }
}
