import Dispatch
import FlywheelUpstream
import Glibc
import Synchronization

/// Test handler: records every event with a CLOCK_MONOTONIC timestamp and signals completion.
final class RecordingHandler: UpstreamResponseHandler {
    struct State {
        var head: UpstreamResponseHead?
        var chunks: [(bytes: [UInt8], at: UInt64)] = []
        var completion: UpstreamCompletion?
        var completedAt: UInt64 = 0
        var completions = 0
        var orderViolations: [String] = []
    }

    let state = Mutex(State())
    private let done = DispatchSemaphore(value: 0)
    /// Called on the loop thread with each chunk (e.g. to cancel from the test).
    let onChunk: (@Sendable (Int) -> Void)?

    init(onChunk: (@Sendable (Int) -> Void)? = nil) { self.onChunk = onChunk }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    func upstreamDidReceiveHead(_ head: UpstreamResponseHead) {
        state.withLock {
            if $0.head != nil { $0.orderViolations.append("second head") }
            if $0.completion != nil { $0.orderViolations.append("head after complete") }
            $0.head = head
        }
    }

    func upstreamDidReceiveBody(_ chunk: [UInt8]) {
        let count = state.withLock {
            if $0.head == nil { $0.orderViolations.append("body before head") }
            if $0.completion != nil { $0.orderViolations.append("body after complete") }
            $0.chunks.append((chunk, Self.now()))
            return $0.chunks.count
        }
        onChunk?(count)
    }

    func upstreamDidComplete(_ completion: UpstreamCompletion) {
        state.withLock {
            $0.completions += 1
            $0.completion = completion
            $0.completedAt = Self.now()
        }
        done.signal()
    }

    /// Waits for completion; false on timeout.
    func wait(seconds: Double = 10) -> Bool {
        done.wait(timeout: .now() + seconds) == .success
    }

    var head: UpstreamResponseHead? { state.withLock { $0.head } }
    var completion: UpstreamCompletion? { state.withLock { $0.completion } }
    /// The completion as a result: the timing on success.
    var result: Result<UpstreamTiming, UpstreamError>? {
        guard let completion else { return nil }
        if let error = completion.error { return .failure(error) }
        return .success(completion.timing)
    }
    var error: UpstreamError? { completion?.error }
    var bodyText: String {
        state.withLock { String(decoding: $0.chunks.flatMap(\.bytes), as: UTF8.self) }
    }
    var chunkCount: Int { state.withLock { $0.chunks.count } }
}
