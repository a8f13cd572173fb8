// The public types of the lower layers that are part of MicroSSE's API, re-exported one by one
// (never a whole module): `import MicroSSE` is all an embedder writes.
@_exported import struct MicroSSEAuth.ChannelPattern
@_exported import struct MicroSSEAuth.Claims
@_exported import struct MicroSSETransport.Request
@_exported import struct MicroSSETransport.Response
@_exported import struct MicroSSEWire.Event
@_exported import enum MicroSSEWire.EventEncoder
@_exported import struct MicroSSEWire.EventStreamParser
@_exported import struct MicroSSEWire.MicroSSEError
@_exported import struct MicroSSEWire.ParsedEvent
