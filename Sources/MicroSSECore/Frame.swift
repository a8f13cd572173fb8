/// Encoded bytes ready for the socket, shared by every subscriber that receives them
/// (an `Array` is a reference to one buffer: enqueueing it copies no bytes).
package struct Frame: Sendable {
    /// The encoded event, comment or retry block.
    package let bytes: [UInt8]
    /// Whether this frame is an event (counted as delivered) rather than a heartbeat or retry.
    package let isEvent: Bool

    package init(bytes: [UInt8], isEvent: Bool) {
        self.bytes = bytes
        self.isEvent = isEvent
    }
}
