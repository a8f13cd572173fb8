/// One request's body as it arrives, as a state machine whose methods return what the access
/// handler must do. Pure: tested without sockets.
///
/// libmicrohttpd calls the access handler once when the headers are in, once per piece of body,
/// and once more with no data when the body is complete. A body over `limit` is refused with
/// `413`: at once when `Content-Length` announces it, otherwise (chunked, or longer than
/// announced) at the end, because libmicrohttpd 0.9.75 refuses a response queued mid-upload; the
/// rest is discarded meanwhile, up to another `limit`, after which the connection is closed.
///
/// The body's bytes are taken from a budget shared by all uploads in flight (`reserve`, given
/// back by the caller when the request completes: ``reserved``). An upload that does not fit is
/// refused with `503`: at once when `Content-Length` announces it, else at the end, its body
/// discarded meanwhile like an oversized one.
package struct UploadState: Sendable {
    package enum Phase: Sendable, Equatable {
        /// Storing the body.
        case receiving
        /// Over the limit: discarding what still arrives (this many bytes so far).
        case discarding(Int)
        /// A response was already queued (the refusal): ignore the rest.
        case answered
    }

    /// What the access handler does next.
    package enum Action: Sendable, Equatable {
        /// Return `MHD_YES` and wait for more.
        case proceed
        /// Queue `413` now.
        case refuseTooLarge
        /// Queue `503` now: the uploads in flight hold the budget.
        case refuseBusy
        /// Give up: return `MHD_NO`, libmicrohttpd closes the connection.
        case close
        /// The body is complete: hand the request (with ``takeBody()``) to the layer above.
        case dispatch
    }

    /// The largest body accepted.
    package let limit: Int
    package private(set) var phase = Phase.receiving
    /// Bytes taken from the uploads' budget, to give back when the request completes.
    package private(set) var reserved = 0
    private var body: [UInt8] = []
    private var busy = false

    package init(limit: Int) {
        self.limit = limit
    }

    /// The headers are in; `contentLength` is the announced length, if any.
    package mutating func headers(contentLength: Int?, reserve: (Int) -> Bool = { _ in true }) -> Action {
        if let contentLength, contentLength > limit {
            phase = .answered
            return .refuseTooLarge
        }
        if let contentLength, contentLength > 0 {
            guard reserve(contentLength) else {
                phase = .answered
                return .refuseBusy
            }
            reserved = contentLength
        }
        return .proceed
    }

    /// The request was answered before its body (refused on its head): ignore the rest.
    package mutating func refused() {
        phase = .answered
    }

    /// A piece of body arrived.
    package mutating func receive(_ bytes: UnsafeRawBufferPointer, reserve: (Int) -> Bool = { _ in true }) -> Action {
        switch phase {
        case .answered:
            return .proceed
        case .discarding(let discarded):
            let total = discarded + bytes.count
            phase = .discarding(total)
            return total > limit ? .close : .proceed
        case .receiving:
            guard body.count + bytes.count <= limit else {
                body = []
                phase = .discarding(bytes.count)
                return .proceed
            }
            let needed = body.count + bytes.count - reserved
            if needed > 0 {
                guard reserve(needed) else {
                    body = []
                    busy = true
                    phase = .discarding(bytes.count)
                    return .proceed
                }
                reserved += needed
            }
            body.append(contentsOf: bytes)
            return .proceed
        }
    }

    /// The body is complete.
    package mutating func end() -> Action {
        switch phase {
        case .answered:
            return .proceed
        case .discarding:
            phase = .answered
            return busy ? .refuseBusy : .refuseTooLarge
        case .receiving:
            phase = .answered
            return .dispatch
        }
    }

    /// Hands over the stored body (once, after ``end()`` said `.dispatch`).
    package mutating func takeBody() -> [UInt8] {
        defer { body = [] }
        return body
    }
}
