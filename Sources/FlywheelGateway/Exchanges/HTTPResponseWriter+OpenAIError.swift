import FlywheelHTTP

extension HTTPResponseWriter {
    /// Ends the response with `error`. A stream whose head went out reports it in-band, as OpenAI does
    /// mid-stream: one `data: {"error": ...}` event, then the stream's end. Otherwise it is the whole answer.
    func end(with error: OpenAIError, streaming: Bool, requestID: String) {
        if streaming {
            write(ServerSentEvents.encode(data: error.json.serializedString()))
            endStream()
        } else {
            send(error.response(requestID: requestID))
        }
    }
}
