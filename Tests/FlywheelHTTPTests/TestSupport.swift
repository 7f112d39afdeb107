import FlywheelHTTP
import Synchronization
import XCTest

/// A responder backed by a closure (runs on the event loop).
struct ClosureResponder: HTTPResponder {
    let handler: @Sendable (HTTPRequest, HTTPResponseWriter) -> Void

    init(_ handler: @escaping @Sendable (HTTPRequest, HTTPResponseWriter) -> Void) {
        self.handler = handler
    }

    func respond(to request: HTTPRequest, writer: HTTPResponseWriter) {
        handler(request, writer)
    }
}

/// Echoes method, path and body: "GET /x body".
let echoResponder = ClosureResponder { request, writer in
    let text = "\(request.method) \(request.path) " + String(decoding: request.body, as: UTF8.self)
    writer.send(HTTPResponse(status: 200, headers: ["Content-Type": "text/plain"], body: Array(text.utf8)))
}

/// Starts a server on an ephemeral loopback port with two loops and the given tweaks.
func startTestServer(
    responder: any HTTPResponder = echoResponder,
    configure: (inout HTTPServerConfiguration) -> Void = { _ in }
) throws -> HTTPServer {
    var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0)
    configuration.eventLoopCount = 2
    configure(&configuration)
    let server = HTTPServer(configuration: configuration, responder: responder)
    try server.start()
    return server
}

/// Polls `condition` for up to `timeout` seconds.
func eventually(timeout: Double = 2, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}

/// A thread-safe box for values observed by responders.
final class Box<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { storage = Mutex(value) }
    var value: Value {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
    func update(_ body: (inout Value) -> Void) { storage.withLock { body(&$0) } }
}
