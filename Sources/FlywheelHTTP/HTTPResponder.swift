/// The application side of the server.
public protocol HTTPResponder: Sendable {
    /// Called on an event-loop thread with a complete request. Must not block. Answer through `writer`,
    /// from any thread, exactly once with `send`, or with `startStream` + `write`* + `endStream`.
    func respond(to request: HTTPRequest, writer: HTTPResponseWriter)
}
