/// Receives one transfer's events. All calls come on the client's own curl thread, in order:
/// head? then body* then exactly one complete. Calls must return quickly: they run inside the loop that
/// drives every other transfer of the client. They may call `UpstreamTransfer.cancel()` and `UpstreamClient.start`.
/// (Exception: `start` on a client that was already shut down completes on the calling thread with `.shutdown`.)
public protocol UpstreamResponseHandler: AnyObject, Sendable {
    /// The committed response's status and headers, once the header block is complete. At most once.
    func upstreamDidReceiveHead(_ head: UpstreamResponseHead)
    /// A chunk of body bytes as it arrived from the network (not re-buffered). Only after the head.
    func upstreamDidReceiveBody(_ chunk: [UInt8])
    /// Exactly once, last. `.success` means the whole response was received (whatever its status).
    func upstreamDidComplete(_ result: Result<UpstreamTiming, UpstreamError>, timing: UpstreamTiming)
}
