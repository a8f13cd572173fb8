import MicroSSETransport
import Testing

@Suite("UploadState with the uploads' shared byte budget")
struct UploadBudgetTests {
    private func receive(_ state: inout UploadState, _ count: Int, _ budget: UploadBudget) -> UploadState.Action {
        let bytes = [UInt8](repeating: 0x61, count: count)
        return bytes.withUnsafeBytes { state.receive($0, reserve: budget.reserve) }
    }

    @Test("an announced body that does not fit the budget is refused with 503 on its head")
    func announcedOverBudget() {
        let budget = UploadBudget(limit: 15)
        var first = UploadState(limit: 10)
        #expect(first.headers(contentLength: 10, reserve: budget.reserve) == .proceed)
        #expect(first.reserved == 10)
        var second = UploadState(limit: 10)
        #expect(second.headers(contentLength: 6, reserve: budget.reserve) == .refuseBusy)
        #expect(second.reserved == 0)
        budget.release(first.reserved)
        #expect(budget.inFlight == 0)
    }

    @Test("a chunked body that crosses the budget is discarded and refused with 503 at its end")
    func chunkedOverBudget() {
        let budget = UploadBudget(limit: 12)
        var holder = UploadState(limit: 10)
        #expect(holder.headers(contentLength: 8, reserve: budget.reserve) == .proceed)
        var chunked = UploadState(limit: 10)
        #expect(chunked.headers(contentLength: nil, reserve: budget.reserve) == .proceed)
        #expect(receive(&chunked, 3, budget) == .proceed)
        #expect(chunked.reserved == 3)
        #expect(receive(&chunked, 3, budget) == .proceed)
        #expect(chunked.phase == .discarding(3))
        #expect(chunked.end() == .refuseBusy)
        #expect(chunked.takeBody().isEmpty)
        budget.release(holder.reserved)
        budget.release(chunked.reserved)
        #expect(budget.inFlight == 0)
    }

    @Test("a body within an announced Content-Length takes nothing more from the budget")
    func announcedBodyReservedOnce() {
        let budget = UploadBudget(limit: 10)
        var s = UploadState(limit: 10)
        #expect(s.headers(contentLength: 10, reserve: budget.reserve) == .proceed)
        #expect(receive(&s, 4, budget) == .proceed)
        #expect(receive(&s, 6, budget) == .proceed)
        #expect(s.end() == .dispatch)
        #expect(s.reserved == 10)
        #expect(budget.inFlight == 10)
    }
}
