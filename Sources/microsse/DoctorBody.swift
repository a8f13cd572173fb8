// The doctor's HTTP client, continued: a response body's framing, decoded with a bound.

/// Turns a response body's framing (chunked, Content-Length or close-delimited) into its bytes.
struct BodyDecoder {
    enum Framing { case chunked, length(Int), close }
    private enum State { case size, data(Int), dataEnd, trailer, done }
    private let framing: Framing
    private var state = State.size
    private var pending: [UInt8] = []
    private var received = 0
    /// The longest chunk-size or trailer line accepted (a line that never ends is refused, not
    /// stored).
    static let maxLineBytes = 4096
    /// Whether the body has ended as its framing says (the final chunk, or all of its length).
    private(set) var complete = false

    init(_ head: ResponseHead) {
        if head.header("Transfer-Encoding")?.lowercased().contains("chunked") == true {
            framing = .chunked
        } else if let length = head.header("Content-Length").flatMap({ Int($0) }) {
            framing = .length(length)
            complete = length == 0
        } else {
            framing = .close
        }
    }

    /// The body bytes in `bytes`.
    mutating func decode(_ bytes: [UInt8]) throws -> [UInt8] {
        switch framing {
        case .close:
            return bytes
        case .length(let length):
            let take = Array(bytes.prefix(length - received))
            received += take.count
            complete = received == length
            return take
        case .chunked:
            pending += bytes
            return try dechunk()
        }
    }

    private mutating func dechunk() throws -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        defer { pending.removeFirst(i) }
        while i < pending.count {
            if case .data(let remaining) = state {
                let n = min(remaining, pending.count - i)
                out += pending[i..<(i + n)]
                i += n
                state = n == remaining ? .dataEnd : .data(remaining - n)
                continue
            }
            if case .done = state { throw DoctorError("bytes after the final chunk") }
            guard let end = (i..<(pending.count - 1)).first(where: { pending[$0] == 13 && pending[$0 + 1] == 10 })
            else {
                guard pending.count - i <= Self.maxLineBytes else {
                    throw DoctorError("a chunk-size or trailer line longer than \(Self.maxLineBytes) bytes")
                }
                break
            }
            guard end - i <= Self.maxLineBytes else {
                throw DoctorError("a chunk-size or trailer line longer than \(Self.maxLineBytes) bytes")
            }
            let line = String(decoding: pending[i..<end], as: UTF8.self)
            i = end + 2
            switch state {
            case .size:
                let hex = line.split(separator: ";").first.map { $0.trimmingSpaces } ?? ""
                guard let size = Int(hex, radix: 16), size >= 0 else {
                    throw DoctorError("bad chunk size '\(line.prefix(40))'")
                }
                state = size == 0 ? .trailer : .data(size)
            case .dataEnd:
                guard line.isEmpty else { throw DoctorError("a chunk is not followed by CRLF") }
                state = .size
            case .trailer where line.isEmpty:
                state = .done
                complete = true
            default:
                break
            }
        }
        return out
    }
}

extension Substring {
    fileprivate var trimmingSpaces: String { String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
}
