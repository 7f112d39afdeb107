import FlywheelHTTP
import Synchronization

/// Where an exchange's answer goes: the client's connection (`HTTPResponseWriter`), or nowhere for a shadow
/// run, whose answer is only logged (`ShadowSink`).
protocol ResponseSink: AnyObject, Sendable {
    /// The event loop the exchange runs on (its upstream client and timers live there).
    var eventLoop: HTTPEventLoop { get }
    func send(_ response: HTTPResponse)
    func startStream(status: Int, headers: HTTPHeaders)
    func write(_ bytes: [UInt8])
    func endStream()
    /// Runs once if the response is cut before the exchange ended it (the client left, or the shutdown grace
    /// ran out).
    func onClose(_ callback: @escaping @Sendable (HTTPCloseReason) -> Void)
}

extension HTTPResponseWriter: ResponseSink {}

extension ResponseSink {
    /// Ends the response with `error`. A stream whose head went out reports it in-band, as OpenAI does
    /// mid-stream: one `data: {"error": ...}` event, then the stream's end. Otherwise it is the whole answer.
    func end(with error: OpenAIError, streaming: Bool, context: RequestContext) {
        if streaming {
            write(ServerSentEvents.encode(data: error.json.serializedString()))
            endStream()
        } else {
            send(context.errorResponse(error))
        }
    }
}

/// The sink of a shadow run: nobody reads its answer (the ledger logs it), and no client can leave.
final class ShadowSink: ResponseSink {
    let eventLoop: HTTPEventLoop

    init(eventLoop: HTTPEventLoop) { self.eventLoop = eventLoop }

    func send(_ response: HTTPResponse) {}
    func startStream(status: Int, headers: HTTPHeaders) {}
    func write(_ bytes: [UInt8]) {}
    func endStream() {}
    func onClose(_ callback: @escaping @Sendable (HTTPCloseReason) -> Void) {}
}
