#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A raw HTTP/1.1 server for the upstream client's edge cases, the ones a well-behaved server library cannot
/// produce: interim 103 responses, TCP resets (SO_LINGER 0) mid-body, requests that are never answered,
/// event streams paced by the test. Blocking sockets, one thread per connection, keep-alive; shared by all
/// tests of the process (`shared`). Routes (matched on the end of the path, so a base URL can carry one):
///
///     /v1/echo                       200 JSON: the method, target, request headers (in order) and body
///     /v1/sse?n=N&delay=S[&gate=G]   200 event stream of N events `data: i`, S seconds apart; with a gate,
///                                    event i > 0 waits until /release?key=G was hit i times
///     /v1/flaky?key=K&fail=N&status=C[&retry_after=R]   the first N hits of K answer C, then 200
///     /v1/status?code=C&key=K        C with a JSON body (hits counted per key)
///     /v1/hits?key=K                 the hit count of K
///     /v1/early                      a 103 block, then 201 JSON with `X-Final: yes`
///     /v1/hang[?key=K]               counts a hit of "hang:K", then never answers (until the client leaves)
///     /v1/release?key=G              counts a hit of "release:G" (opens gate G one event further)
///     /v1/await?key=K&n=N            answers once K was hit N times (or after 10 s): a wait on an event
///     /v1/reset                      a 200 head and one chunk of an event stream, then a TCP reset
///
/// JSON bodies are written the way Python's `json.dumps` writes them (`{"hits": 1}`).
public final class ScriptedUpstreamServer: Sendable {
    public static let shared: ScriptedUpstreamServer = {
        do { return try ScriptedUpstreamServer() } catch { fatalError("scripted upstream server: \(error)") }
    }()

    public let port: UInt16
    /// A port on which nothing listens.
    public let deadPort: UInt16
    /// Hits by key ("flaky:K", "hang:K", "release:G", ...), as the routes count them.
    public let hits = EventCounts()
    private let listener: Int32

    public var baseURL: String { "http://127.0.0.1:\(port)/v1" }
    public var deadURL: String { "http://127.0.0.1:\(deadPort)/v1" }

    public init() throws {
        let (fd, boundPort) = try LoopbackPort.bind(listen: true)
        listener = fd
        port = boundPort
        deadPort = LoopbackPort.unused()
        let hits = self.hits
        Self.spawn {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { if errno == EINTR || errno == ECONNABORTED { continue } else { return } }
                var on: Int32 = 1
                setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
                Self.spawn {
                    var connection = ScriptedConnection(fd: client, hits: hits)
                    connection.serve()
                    close(client)
                }
            }
        }
    }

    /// Stops accepting (open connections end when their clients leave).
    public func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private final class Body: @unchecked Sendable {  // handed to exactly one new thread
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    static func spawn(_ body: @escaping () -> Void) {
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        let rc = pthread_create(&thread, nil, { argument in
            Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create: \(rc)")
        pthread_detach(thread)
    }
}
