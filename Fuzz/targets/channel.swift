// Fuzz target: channel names. `ChannelName(_:)` must accept exactly 1–128 bytes of
// `A–Z a–z 0–9 . _ ~ -` (checked against an independent oracle), and the broker must take every
// accepted name (an invalid one cannot reach it: only a `ChannelName` value can).
// Input: names separated by 0xFF; the first byte of the input is not part of any name.

func oracleAccepts(_ b: [UInt8]) -> Bool {
    guard (1...128).contains(b.count) else { return false }
    let allowed = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-".utf8))
    return b.allSatisfy { allowed.contains($0) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChannel(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard size >= 1 else { return 0 }
    let names = UnsafeRawBufferPointer(rebasing: input[1...]).split(
        separator: 0xFF, omittingEmptySubsequences: false
    ).prefix(16).map { Array($0) }
    let broker = MemoryBroker(limits: .init(historyCount: 4, historyBytes: 1 << 16))
    var accepted = Set<[UInt8]>()
    for raw in names {
        // The name as the server sees it: the path segment after percent-decoding (any bytes),
        // decoded as a String (invalid UTF-8 becomes U+FFFD, which is refused anyway).
        let name = String(decoding: raw, as: UTF8.self)
        let expected = oracleAccepts(Array(name.utf8))
        var channel: ChannelName?
        do {
            channel = try ChannelName(name)
            guard expected else { fuzzFail("invalid channel name accepted: \(raw)") }
        } catch {
            guard !expected else { fuzzFail("valid channel name refused: \(name)") }
            guard error.code == .invalidChannel else { fuzzFail("wrong code \(error.code)") }
            guard !error.message.isEmpty, !error.message.utf8.contains(0x0A) else {
                fuzzFail("reason is not one line")
            }
        }
        // Only a validated name reaches the broker (the type says so); it takes every one.
        guard let channel else { continue }
        do {
            _ = try broker.publish(try! Event(data: "x"), to: channel)
            accepted.insert(Array(name.utf8))
        } catch {
            fuzzFail("broker refused \(name): \(error)")
        }
        let sub = Subscriber(channels: [channel], limit: 1 << 16)
        _ = broker.subscribe(sub, after: nil)
        broker.unsubscribe(sub)
    }
    guard broker.channelCount == accepted.count else {
        fuzzFail("broker holds \(broker.channelCount) channels, expected \(accepted.count)")
    }
    return 0
}
