/// Receives one transfer's events. All calls come on the client's driver's loop thread, in order:
/// head? then body* then exactly one complete. Calls must return quickly: they run inside the loop that drives
/// every other transfer of the client (and, in the daemon, the HTTP connections of that loop). They may call
/// `UpstreamTransfer.cancel()`, `UpstreamClient.start` and `UpstreamClient.shutdown`.
/// (Exception: `start` on a client that was already shut down completes on the calling thread with `.shutdown`.)
///
/// The client lets go of the handler before it calls `upstreamDidComplete`, so a handler may keep its
/// `UpstreamTransfer` (which refers to the client's job) without forming a reference cycle.
public protocol UpstreamResponseHandler: AnyObject, Sendable {
    /// The committed response's status and headers, once the header block is complete. At most once.
    func upstreamDidReceiveHead(_ head: UpstreamResponseHead)
    /// A chunk of body bytes as it arrived from the network (not re-buffered). Only after the head.
    func upstreamDidReceiveBody(_ chunk: [UInt8])
    /// Exactly once, last: how the transfer ended and its timing.
    func upstreamDidComplete(_ completion: UpstreamCompletion)
}
