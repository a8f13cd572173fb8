import MicroSSECore

func frame(_ text: String, isEvent: Bool = true) -> Frame {
    Frame(bytes: Array(text.utf8), isEvent: isEvent)
}

/// Channel names written as literals in tests (always valid ones).
extension ChannelName: ExpressibleByStringLiteral {
    public init(stringLiteral name: String) {
        try! self.init(name)
    }
}
