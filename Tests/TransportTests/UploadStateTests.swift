import MicroSSETransport
import Testing

@Suite("UploadState: a request body as it arrives")
struct UploadStateTests {
    private func receive(_ state: inout UploadState, _ count: Int) -> UploadState.Action {
        let bytes = [UInt8](repeating: 0x61, count: count)
        return bytes.withUnsafeBytes { state.receive($0) }
    }

    @Test("a body within the limit is stored and dispatched whole")
    func bodyWithinLimit() {
        var s = UploadState(limit: 10)
        #expect(s.headers(contentLength: 10) == .proceed)
        #expect(receive(&s, 4) == .proceed)
        #expect(receive(&s, 6) == .proceed)
        #expect(s.end() == .dispatch)
        #expect(s.takeBody().count == 10)
        #expect(s.phase == .answered)
    }

    @Test("an announced Content-Length over the limit is refused before any body byte")
    func announcedOversize() {
        var s = UploadState(limit: 10)
        #expect(s.headers(contentLength: 11) == .refuseTooLarge)
        #expect(receive(&s, 11) == .proceed)
        #expect(s.end() == .proceed)
        #expect(s.takeBody().isEmpty)
    }

    @Test("a chunked body that outgrows the limit is discarded and refused at its end")
    func chunkedOversize() {
        var s = UploadState(limit: 10)
        #expect(s.headers(contentLength: nil) == .proceed)
        #expect(receive(&s, 8) == .proceed)
        #expect(receive(&s, 8) == .proceed)
        #expect(s.phase == .discarding(8))
        #expect(s.end() == .refuseTooLarge)
        #expect(s.takeBody().isEmpty)
    }

    @Test("discarding more than another limit's worth closes the connection")
    func discardBounded() {
        var s = UploadState(limit: 10)
        #expect(receive(&s, 8) == .proceed)
        #expect(receive(&s, 3) == .proceed)
        #expect(s.phase == .discarding(3))
        #expect(receive(&s, 7) == .proceed)
        #expect(receive(&s, 1) == .close)
    }

    @Test("an empty body is dispatched")
    func emptyBody() {
        var s = UploadState(limit: 0)
        #expect(s.headers(contentLength: 0) == .proceed)
        #expect(s.end() == .dispatch)
        #expect(s.takeBody().isEmpty)
    }
}
