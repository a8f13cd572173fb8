/// The one error type MicroSSE throws: a machine-readable ``Code`` plus a one-line reason.
///
/// Codes can grow in later releases, so switch over them with a `default` case.
public struct MicroSSEError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is; stable across releases, new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Value: Hashable, Sendable {
            case invalidArgument
            case invalidChannel
            case invalidID
            case invalidEventName
            case invalidUTF8
            case payloadTooLarge
            case invalidState
            case startFailed
            case notFound
            case unavailable
        }
        fileprivate let value: Value

        /// An argument outside its documented range.
        public static let invalidArgument = Code(value: .invalidArgument)
        /// A channel name that is empty, longer than 128 or has a character outside `A–Z a–z 0–9 . _ ~ -`.
        public static let invalidChannel = Code(value: .invalidChannel)
        /// An event id containing CR, LF or NUL.
        public static let invalidID = Code(value: .invalidID)
        /// An event name (`event:` field) containing CR or LF.
        public static let invalidEventName = Code(value: .invalidEventName)
        /// Bytes given as event data that are not valid UTF-8.
        public static let invalidUTF8 = Code(value: .invalidUTF8)
        /// A payload larger than the configured limit.
        public static let payloadTooLarge = Code(value: .payloadTooLarge)
        /// The call does not fit the object's state (e.g. starting a server twice).
        public static let invalidState = Code(value: .invalidState)
        /// The server could not start (address in use, TLS files unreadable, …).
        public static let startFailed = Code(value: .startFailed)
        /// The thing named does not exist (e.g. an unknown client).
        public static let notFound = Code(value: .notFound)
        /// A backend the call needs is unavailable right now; retrying later may work.
        public static let unavailable = Code(value: .unavailable)

        public var description: String { "\(value)" }
    }

    /// The kind of failure.
    public let code: Code
    /// A one-line, human-readable reason.
    public let message: String

    /// Creates an error with a code and a one-line reason.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
