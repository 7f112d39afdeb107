import CCurl
import Glibc
import Synchronization

/// Everything about one `UpstreamClient.start` call.
///
/// Thread ownership (why `@unchecked Sendable` is safe):
/// - The `let` properties are set in `init` on the caller's thread and never change.
/// - `cancelRequested` and `completed` are atomics, read and written from any thread.
/// - Every `var` is touched only on the driver's loop thread. The job reaches that thread through the driver's
///   `execute` (a happens-before edge) or is created there; other threads only hold it to call `requestCancel()`,
///   which touches atomics and `TransferScheduler.submit` only. The one exception, `complete` for a job the loop
///   never took (client closed), runs on a thread that owns the job alone.
/// - `deinit` may run on any thread, after the loop thread dropped its references; it frees plain C memory only.
///
/// Lifetime: `complete` drops the handler before calling it, so a handler that keeps the `UpstreamTransfer`
/// (hence this job) forms no cycle. The job keeps its scheduler, which holds no finished job.
final class TransferJob: @unchecked Sendable {
    enum State { case queued, running, backoff, done }

    /// Where the next attempt goes and how long to wait before it.
    struct Plan {
        var endpointIndex: Int
        var delayNanos: UInt64
    }

    /// Request head bits for one endpoint, built once and reused for every attempt on it.
    struct PreparedEndpoint {
        var url: String
        var headerList: UnsafeMutablePointer<curl_slist>?
    }

    /// The request without its body (the body lives in `bodyBytes`).
    let request: UpstreamRequest
    let scheduler: TransferScheduler
    let startedNanos: UInt64
    let totalDeadline: UInt64
    /// Non-nil when the request cannot be sent; the loop thread completes it with `.invalidRequest`.
    let invalidReason: String?
    /// Copy of the body that outlives every attempt (CURLOPT_POSTFIELDS does not copy). Never nil.
    let bodyBytes: UnsafeMutableRawPointer
    let bodyCount: Int
    /// The request's own headers as "Name: value" lines, filtered and validated.
    private let requestHeaderLines: [String]
    /// Drop the request's Authorization header for endpoints that bring their own key.
    private let requestHasAuthorization: Bool

    let cancelRequested = Atomic<Bool>(false)
    let completed = Atomic<Bool>(false)

    // MARK: Loop-thread state

    /// Until the job completes; nil afterwards (see "Lifetime").
    private var handler: (any UpstreamResponseHandler)?
    var state: State = .queued
    var endpointIndex = 0
    var triesOnEndpoint = 0
    var attempts = 0
    var easy: CurlEasy?
    var attemptStartedNanos: UInt64 = 0
    var prepared: [PreparedEndpoint?]

    // Response of the current attempt.
    var status = 0
    var responseHeaders: [(String, String)] = []
    var retryAfter: Double?
    /// The head was handed to the handler: from now on bytes are delivered and nothing is retried.
    var committed = false
    /// This attempt's response will be retried: its body is read and dropped.
    var swallowing = false
    var swallowedBytes = 0
    var plannedNext: Plan?
    var firstByteNanos: UInt64?
    /// When the last body byte (or the head) of the current attempt arrived: the idle deadline counts from it.
    var lastByteNanos: UInt64 = 0

    // TransferDeadlines bookkeeping.
    var heapIndex = -1
    var dueNanos: UInt64 = 0

    /// Caller's thread: validates and pre-builds what every attempt needs.
    init(request: UpstreamRequest, handler: any UpstreamResponseHandler, scheduler: TransferScheduler) {
        var withoutBody = request
        withoutBody.body = []
        self.request = withoutBody
        self.handler = handler
        self.scheduler = scheduler
        let now = MonotonicClock.now()
        startedNanos = now
        totalDeadline = now &+ RetryPolicy.nanos(request.timeouts.total)
        prepared = Array(repeating: nil, count: request.endpoints.count)

        let count = request.body.count
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 1)
        request.body.withUnsafeBytes { source in
            if let base = source.baseAddress, count > 0 {
                bytes.copyMemory(from: base, byteCount: count)
            }
        }
        bodyCount = count
        bodyBytes = bytes

        var reason: String?
        var lines: [String] = []
        lines.reserveCapacity(request.headers.count + 1)
        var hasAuthorization = false
        var hasContentType = false
        for (name, value) in request.headers {
            guard Self.isToken(name), Self.isSafeValue(value) else {
                reason = "request header \(name.debugDescription) has an invalid name or a line break in its value"
                break
            }
            if Self.isDropped(name) { continue }
            if Self.equalsIgnoringCase(name, "authorization") { hasAuthorization = true }
            if Self.equalsIgnoringCase(name, "content-type") { hasContentType = true }
            lines.append(Self.headerLine(name, value))
        }
        if !hasContentType && count > 0 {
            lines.append("Content-Type:")  // stops curl from inventing application/x-www-form-urlencoded
        }
        if reason == nil {
            reason = Self.validate(request)
        }
        requestHeaderLines = lines
        requestHasAuthorization = hasAuthorization
        invalidReason = reason
        if reason == nil {
            prepared[0] = prepare(endpointIndex: 0)
        }
    }

    deinit {
        bodyBytes.deallocate()
        releaseHeaderLists()
    }

    private func releaseHeaderLists() {
        for index in prepared.indices {
            if let list = prepared[index]?.headerList { curl_slist_free_all(list) }
            prepared[index] = nil
        }
    }

    var endpoint: UpstreamEndpoint { request.endpoints[endpointIndex] }

    /// Any thread: asks the loop thread to stop this transfer.
    func requestCancel() {
        if completed.load(ordering: .acquiring) { return }
        if cancelRequested.exchange(true, ordering: .acquiringAndReleasing) { return }
        scheduler.submit(.cancel(self))
    }

    /// Loop thread (or the owning thread of a job the loop never took): marks the job completed, lets go of the
    /// handler and of the header lists, then tells the handler how it ended. The only call of
    /// `upstreamDidComplete`.
    func complete(error: UpstreamError?) {
        completed.store(true, ordering: .releasing)
        releaseHeaderLists()
        guard let handler else { return }
        self.handler = nil
        let timing = UpstreamTiming(startedNanos: startedNanos, firstByteNanos: firstByteNanos,
                                    finishedNanos: MonotonicClock.now())
        handler.upstreamDidComplete(UpstreamCompletion(error: error, timing: timing, attempts: attempts))
    }

    /// Loop thread: a new attempt on the current endpoint, on `easy`.
    func beginAttempt(easy: CurlEasy, now: UInt64) {
        attempts += 1
        triesOnEndpoint += 1
        resetResponse()
        attemptStartedNanos = now
        self.easy = easy
        state = .running
    }

    /// Loop thread: the next attempt goes to `endpointIndex` (the same endpoint for a retry).
    func moveTo(endpointIndex index: Int) {
        if index != endpointIndex {
            endpointIndex = index
            triesOnEndpoint = 0
        }
    }

    /// Loop thread: an interim (1xx) head ended; wait for the real one.
    func forgetInterimHead() {
        status = 0
        responseHeaders.removeAll(keepingCapacity: true)
        retryAfter = nil
    }

    /// Loop thread, header callback: the head of this attempt is the response; hand it to the handler.
    func commitHead() {
        committed = true
        let head = UpstreamResponseHead(status: status, headers: responseHeaders, endpoint: endpoint.name,
                                        attempts: attempts)
        handler?.upstreamDidReceiveHead(head)
    }

    /// Loop thread, body callback: bytes of the current attempt. Returns false to abort the transfer.
    func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if cancelRequested.load(ordering: .relaxed) { return false }
        if committed {
            let now = MonotonicClock.now()
            lastByteNanos = now
            if firstByteNanos == nil { firstByteNanos = now }
            handler?.upstreamDidReceiveBody(Array(bytes))
            return true
        }
        if swallowing {
            lastByteNanos = MonotonicClock.now()
            swallowedBytes += bytes.count
            return swallowedBytes <= 65_536  // a huge error body is not worth draining: drop the connection
        }
        return true
    }

    /// Loop thread: the prepared URL and header list for the current endpoint (built on first use).
    func preparedCurrent() -> PreparedEndpoint {
        if let ready = prepared[endpointIndex] { return ready }
        let built = prepare(endpointIndex: endpointIndex)
        prepared[endpointIndex] = built
        return built
    }

    private func prepare(endpointIndex index: Int) -> PreparedEndpoint {
        let endpoint = request.endpoints[index]
        var list: UnsafeMutablePointer<curl_slist>? = curl_slist_append(nil, "Expect:")
        for (name, value) in endpoint.headers where Self.isToken(name) && Self.isSafeValue(value) {
            list = curl_slist_append(list, Self.headerLine(name, value))
        }
        let ownKey = endpoint.apiKey.map { !$0.isEmpty && Self.isSafeValue($0) } ?? false
        if ownKey, let key = endpoint.apiKey {
            list = curl_slist_append(list, "Authorization: Bearer " + key)
        }
        for line in requestHeaderLines {
            if ownKey, requestHasAuthorization, Self.hasPrefixIgnoringCase(line, "authorization:") {
                continue
            }
            list = curl_slist_append(list, line)
        }
        return PreparedEndpoint(url: Self.joinURL(endpoint.baseURL, request.path), headerList: list)
    }

    /// Loop thread: forget the previous attempt's response.
    private func resetResponse() {
        status = 0
        responseHeaders.removeAll(keepingCapacity: true)
        retryAfter = nil
        committed = false
        swallowing = false
        swallowedBytes = 0
        plannedNext = nil
    }

    /// Loop thread: where the next attempt would go, or nil when retries and fallbacks are exhausted or would
    /// start past the total deadline. A `Retry-After` beyond the policy's cap or the deadline skips the retries
    /// on this endpoint (the next one is tried at once, or the answer goes to the client).
    func nextPlan(now: UInt64, retryAfter: Double?) -> Plan? {
        guard now < totalDeadline else { return nil }
        let retriesDone = triesOnEndpoint - 1
        if retriesDone < request.retry.maxRetries {
            if let delay = request.retry.backoffNanos(retry: retriesDone + 1, retryAfter: retryAfter),
               now &+ delay < totalDeadline {
                return Plan(endpointIndex: endpointIndex, delayNanos: delay)
            }
        }
        if endpointIndex + 1 < request.endpoints.count {
            return Plan(endpointIndex: endpointIndex + 1, delayNanos: 0)
        }
        return nil
    }

    /// Replaces the endpoint's API key in `message` (defence in depth: curl messages should never contain it).
    func redacted(_ message: String) -> String {
        var text = message
        for endpoint in request.endpoints {
            if let key = endpoint.apiKey, key.utf8.count >= 4, text.contains(key) {
                text = text.replacing(key, with: "<redacted>")
            }
        }
        return text
    }

    // MARK: header parsing (loop thread, from the header callback)

    /// One raw header line including its CR LF. Returns false to abort the transfer.
    func receiveHeaderLine(_ line: UnsafeRawBufferPointer) -> Bool {
        if committed || swallowing { return true }  // trailers after the head; nothing to do
        var end = line.count
        while end > 0, line[end - 1] == 0x0A || line[end - 1] == 0x0D { end -= 1 }
        if end == 0 {
            return scheduler.headerBlockEnded(self)
        }
        if end >= 5, line[0] == 0x48, line[1] == 0x54, line[2] == 0x54, line[3] == 0x50, line[4] == 0x2F {  // "HTTP/"
            status = Self.parseStatus(line, end: end)
            responseHeaders.removeAll(keepingCapacity: true)
            retryAfter = nil
            return true
        }
        if line[0] == 0x20 || line[0] == 0x09 {  // obsolete line folding: continue the previous value
            if let last = responseHeaders.popLast() {
                let more = String(decoding: UnsafeRawBufferPointer(rebasing: line[0..<end]), as: UTF8.self)
                responseHeaders.append((last.0, last.1 + " " + Self.trimmed(more)))
            }
            return true
        }
        var colon = 0
        while colon < end, line[colon] != 0x3A { colon += 1 }
        guard colon < end else { return true }
        let name = String(decoding: UnsafeRawBufferPointer(rebasing: line[0..<colon]), as: UTF8.self)
        var valueStart = colon + 1
        while valueStart < end, line[valueStart] == 0x20 || line[valueStart] == 0x09 { valueStart += 1 }
        var valueEnd = end
        while valueEnd > valueStart, line[valueEnd - 1] == 0x20 || line[valueEnd - 1] == 0x09 { valueEnd -= 1 }
        let value = String(decoding: UnsafeRawBufferPointer(rebasing: line[valueStart..<valueEnd]), as: UTF8.self)
        if colon == 11, Self.equalsIgnoringCase(name, "retry-after") {
            retryAfter = RetryAfter.seconds(value)
        }
        responseHeaders.append((name, value))
        return true
    }
}
