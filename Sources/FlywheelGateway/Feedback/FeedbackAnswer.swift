import FlywheelHTTP
import Synchronization

/// The one answer to a feedback request: either the store's verdict or, if that does not come within the
/// wait timeout, 503 with `Retry-After`. Whichever comes first is sent; the other is dropped. The timer runs
/// on the connection's event loop; `send` may be called from any thread.
final class FeedbackAnswer: Sendable {
    private let writer: HTTPResponseWriter
    private let answered = Atomic<Bool>(false)
    private let timer = Mutex<HTTPEventLoopTimer?>(nil)

    init(writer: HTTPResponseWriter, requestID: String, waitTimeout: Double) {
        self.writer = writer
        let loop = writer.eventLoop
        let milliseconds = max(1, Int(waitTimeout * 1000))
        let arm: @Sendable () -> Void = { [self] in
            guard !answered.load(ordering: .acquiring) else { return }
            let token = loop.schedule(afterMilliseconds: milliseconds) { [self] in
                send(Gateway.retryLater("The request this feedback is for is not logged yet (still being answered, or the log is busy); retry shortly.",
                                        requestID: requestID), fromTimer: true)
            }
            timer.withLock { $0 = token }
        }
        if loop.inEventLoop { arm() } else { loop.execute(arm) }
    }

    func send(_ response: HTTPResponse) { send(response, fromTimer: false) }

    private func send(_ response: HTTPResponse, fromTimer: Bool) {
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else { return }
        writer.send(response)
        guard !fromTimer else { return }
        let loop = writer.eventLoop
        let cancel: @Sendable () -> Void = { [self] in
            if let token = timer.withLock({ t -> HTTPEventLoopTimer? in defer { t = nil }; return t }) { loop.cancel(token) }
        }
        if loop.inEventLoop { cancel() } else { loop.execute(cancel) }
    }
}
