import FlywheelUpstream
import Synchronization

/// A small request the gateway makes on its own behalf (not for a client), e.g. an upstream's model list:
/// collects the body up to a limit and hands the result to one completion. Not logged.
final class UpstreamFetch: UpstreamResponseHandler {
    struct Response: Sendable {
        var status: Int
        var body: [UInt8]
    }

    private let limit: Int
    private let completion: @Sendable (Result<Response, UpstreamError>) -> Void
    private struct State {
        var status = 0
        var body: [UInt8] = []
        var tooLarge = false
    }
    private let state = Mutex(State())

    private init(limit: Int, completion: @escaping @Sendable (Result<Response, UpstreamError>) -> Void) {
        self.limit = limit
        self.completion = completion
    }

    /// Sends `request` through `client`; `completion` runs once, on the client's loop thread (or at once when
    /// there is no client).
    static func start(_ request: UpstreamRequest, client: UpstreamClient?, limit: Int = 4 << 20,
                      completion: @escaping @Sendable (Result<Response, UpstreamError>) -> Void) {
        guard let client else { return completion(.failure(.shutdown)) }
        client.start(request, handler: UpstreamFetch(limit: limit, completion: completion))
    }

    func upstreamDidReceiveHead(_ head: UpstreamResponseHead) {
        state.withLock { $0.status = head.status }
    }

    func upstreamDidReceiveBody(_ chunk: [UInt8]) {
        state.withLock { s in
            guard !s.tooLarge else { return }
            if s.body.count + chunk.count > limit {
                s.tooLarge = true
                s.body = []
            } else {
                s.body += chunk
            }
        }
    }

    func upstreamDidComplete(_ result: UpstreamCompletion) {
        let s = state.withLock { s -> State in defer { s.body = [] }; return s }
        if let error = result.error { return completion(.failure(error)) }
        // Too large counts as no answer: the caller keeps what it had.
        completion(s.tooLarge ? .failure(.cancelled) : .success(Response(status: s.status, body: s.body)))
    }
}
