import CCurl
import Glibc
import Dispatch
import Synchronization

/// The transfers of one `UpstreamClient` on one event loop: starts each attempt on a pooled easy handle, retries
/// with backoff on the same endpoint, falls back to the next endpoint, enforces the first-byte and total
/// deadlines, and completes every transfer exactly once. The curl side (multi handle, sockets, curl's timer) is
/// its `CurlMultiDriver`.
///
/// Thread rules:
/// - Any thread: `start`, `submit` (via `UpstreamTransfer.cancel`), `shutdown`, `activeCount`. On the driver's
///   loop thread they act at once, or — inside an operation of the scheduler or its multi driver, e.g. from a
///   handler callback — as soon as that operation ends; from other threads they hop to the loop with `execute`.
/// - Everything else (`live`, `pool`, `deadlines`, the jobs' mutable state, the multi driver) belongs to the
///   driver's loop thread. Handler callbacks always come on it, except `.shutdown` completions of work the loop
///   can no longer take: a `start` after the close (on the caller's thread), and everything left when the loop
///   stopped for good before `shutdown` (on the thread calling `shutdown`, once no loop thread can run).
///
/// Why `@unchecked Sendable` is safe: other threads touch only `activeCount`, `closedFlag` and
/// `shutdownClaimed` (atomics), `closedSignal` (a semaphore) and the immutable `loop` and `configuration`;
/// every `var` is loop-thread state as stated above.
///
/// Lifetime: a job is referenced by the scheduler only while it runs (its `live` entry, its easy handle's
/// CURLOPT_PRIVATE, a `deadlines` entry, a pending command), and `finish` removes all of these before the handler
/// hears `complete`; the job drops its handler at that moment. So no job or handler outlives its completion
/// because of the client, whatever the handler keeps.
final class TransferScheduler: @unchecked Sendable, CurlMultiDriverDelegate {
    let configuration: UpstreamClientConfiguration
    private let loop: any UpstreamEventDriver
    private let multi: CurlMultiDriver

    /// Transfers started and not yet completed (any thread reads it).
    let activeCount = Atomic<Int>(0)
    /// Set on the loop thread when the scheduler closed; other threads read it to refuse new work.
    private let closedFlag = Atomic<Bool>(false)
    /// `shutdown()` was claimed by one caller.
    private let shutdownClaimed = Atomic<Bool>(false)
    /// Signalled once the scheduler closed; every waiter signals it again for the next one.
    private let closedSignal = DispatchSemaphore(value: 0)

    // Loop-thread state.
    /// Nesting of scheduler operations; commands arriving while > 0 (or while curl is busy) are deferred.
    private var depth = 0
    private var deferred: [TransferCommand] = []
    private var shutdownRequested = false
    private var closed = false
    /// The loop stopped for good (a hop was dropped): do not call it any more.
    private var loopGone = false
    private var pool: [CurlEasy] = []
    private let poolLimit: Int
    private var live: [ObjectIdentifier: TransferJob] = [:]
    private var deadlines = TransferDeadlines()
    private var deadlineTimer: (any UpstreamDriverTimer)?
    private var deadlineTimerDue: UInt64 = 0

    /// Any thread (the client's init).
    init(configuration: UpstreamClientConfiguration, loop: any UpstreamEventDriver) throws {
        self.configuration = configuration
        self.loop = loop
        multi = try CurlMultiDriver(configuration: configuration, loop: loop)
        poolLimit = max(16, min(configuration.maxTotalConnections, 4096))
        deferred.reserveCapacity(64)
        multi.delegate = self
    }

    // MARK: Any thread

    /// Any thread: starts a job, or completes it at once with `.shutdown` (on the calling thread) when closed.
    func start(_ job: TransferJob) {
        activeCount.add(1, ordering: .relaxed)
        if !submit(.start(job)) {
            completeUnaccepted(job)
        }
    }

    /// Any thread: applies `command` on the loop thread (now, or at the end of the current operation), or hops
    /// there. False once the scheduler closed.
    @discardableResult
    func submit(_ command: TransferCommand) -> Bool {
        if closedFlag.load(ordering: .acquiring) { return false }
        if loop.inDriverThread {
            perform(command)
            return true
        }
        let hop: DriverHop
        if case .start(let job) = command {
            // If the loop is gone for good the task is dropped: complete the job then.
            hop = DriverHop { [self] in completeUnaccepted(job) }
        } else {
            hop = DriverHop(onDrop: nil)
        }
        loop.execute { [self] in
            hop.run { perform(command) }
        }
        return true
    }

    /// Any thread. On the loop thread, outside any operation: closes now. On the loop thread inside an
    /// operation (a handler callback): closes when that operation ends, before control returns to the loop.
    /// Other threads: hop to the loop and wait until closed (or, if the loop dropped the hop because it is gone
    /// for good, close here).
    func shutdown() {
        let first = !shutdownClaimed.exchange(true, ordering: .acquiringAndReleasing)
        if loop.inDriverThread {
            guard first else { return }
            shutdownRequested = true
            if !inOperation { settle() }
            return
        }
        if first {
            let hop = DriverHop { [self] in
                // The loop thread is gone: nothing else touches the scheduler any more.
                loopGone = true
                multi.loopDidStop()
                shutdownRequested = true
                if !closed { close() }
            }
            loop.execute { [self] in
                hop.run {
                    shutdownRequested = true
                    if !inOperation { settle() }
                }
            }
        }
        closedSignal.wait()
        closedSignal.signal()  // pass it on to the next waiter
    }

    /// A job that never reached the loop thread: the caller's thread owns it and completes it with `.shutdown`.
    private func completeUnaccepted(_ job: TransferJob) {
        activeCount.subtract(1, ordering: .relaxed)
        job.state = .done
        job.complete(error: .shutdown)
    }

    // MARK: Operations (loop thread)

    private var inOperation: Bool { depth > 0 || multi.isBusy }

    private func perform(_ command: TransferCommand) {
        if inOperation {
            deferred.append(command)
            return
        }
        depth += 1
        apply(command)
        depth -= 1
        settle()
    }

    private func apply(_ command: TransferCommand) {
        switch command {
        case .start(let job):
            guard job.state == .queued else { return }
            if closed || shutdownRequested {
                live[ObjectIdentifier(job)] = job
                finish(job, .shutdown)
            } else {
                accept(job)
            }
        case .cancel(let job):
            // A job whose start is still pending sees `cancelRequested` when it is accepted.
            guard job.state != .queued else { return }
            finish(job, .cancelled)
        }
    }

    /// Runs at the end of every outermost operation: deferred commands, curl's immediate timeouts, a requested
    /// shutdown, then re-arms the deadline timer.
    private func settle() {
        while !closed {
            if !deferred.isEmpty {
                var commands: [TransferCommand] = []
                swap(&commands, &deferred)
                depth += 1
                for command in commands { apply(command) }
                depth -= 1
                if deferred.isEmpty {
                    commands.removeAll(keepingCapacity: true)
                    swap(&commands, &deferred)  // keep the capacity
                }
                continue
            }
            if shutdownRequested {
                depth += 1
                close()
                depth -= 1
                return
            }
            if multi.runPendingTimeout() { continue }
            break
        }
        rearmDeadlineTimer()
    }

    /// Closes for good: every job completes with `.shutdown`, the deadline timer is released, the easy handles
    /// and the multi handle are cleaned up. Loop thread (or the caller's once the loop is gone).
    private func close() {
        closed = true
        closedFlag.store(true, ordering: .releasing)
        // Including the commands queued by these completions (e.g. a handler starting a retry of its own).
        while !deferred.isEmpty || !live.isEmpty {
            var pending: [TransferCommand] = []
            swap(&pending, &deferred)
            for case .start(let job) in pending {
                live[ObjectIdentifier(job)] = job
                finish(job, .shutdown)
            }
            for job in Array(live.values) {
                finish(job, .shutdown)
            }
        }
        if let timer = deadlineTimer, !loopGone { loop.cancel(timer) }
        deadlineTimer = nil
        pool.removeAll()  // CurlEasy.deinit runs curl_easy_cleanup
        multi.close()
        closedSignal.signal()
    }

    // MARK: CurlMultiDriverDelegate (loop thread)

    func curlTransferDidEnd(_ easy: UnsafeMutableRawPointer, code: CURLcode) {
        var pointer: UnsafeMutableRawPointer?
        _ = fw_easy_getinfo_ptr(easy, CURLINFO_PRIVATE, &pointer)
        guard let pointer else { return }
        // The job is alive: it is in `live` for as long as its easy handle is on the multi.
        let job = Unmanaged<TransferJob>.fromOpaque(pointer).takeUnretainedValue()
        attemptEnded(job, code)
    }

    func curlDriverDidBecomeIdle() {
        if depth == 0 { settle() }
    }

    // MARK: Deadlines (loop thread)

    private func rearmDeadlineTimer() {
        guard !closed, !loopGone, let due = deadlines.nextDue else { return }  // an armed timer fires for nothing
        // An armed timer that fires no later is kept (it re-arms when it finds nothing due): no churn when later
        // deadlines are added, as every new request's first-byte deadline is.
        if let timer = deadlineTimer {
            if deadlineTimerDue <= due { return }
            loop.cancel(timer)
        }
        let now = MonotonicClock.now()
        deadlineTimerDue = due
        deadlineTimer = loop.schedule(afterMilliseconds: due > now ? Int((due - now + 999_999) / 1_000_000) : 0) {
            [self] in
            deadlineTimer = nil
            guard !closed else { return }
            depth += 1
            fireDeadlines(now: MonotonicClock.now())
            depth -= 1
            settle()
        }
    }

    private func fireDeadlines(now: UInt64) {
        while let job = deadlines.popDue(now: now) {
            switch job.state {
            case .backoff:
                startAttempt(job)
            case .running where !job.committed && !job.swallowing:
                detach(job)
                let error = UpstreamError.timedOut(endpoint: job.endpoint.name, phase: "first byte",
                                                   seconds: job.request.timeouts.firstByte)
                retryOrFinish(job, error)
            case .running:
                // The idle deadline, checked lazily: body bytes only move `lastByteNanos`.
                let due = idleDue(job)
                if now < due {
                    if due < job.totalDeadline { deadlines.schedule(job, at: due) }
                } else if job.swallowing, let plan = job.plannedNext {
                    detach(job)  // a stalled error body being drained: go on with the planned retry
                    follow(job, plan)
                } else {
                    finish(job, .timedOut(endpoint: job.endpoint.name, phase: "next byte",
                                          seconds: job.request.timeouts.idle))
                }
            default:
                break
            }
        }
    }

    /// When the current attempt's silence since its last byte reaches `timeouts.idle`.
    private func idleDue(_ job: TransferJob) -> UInt64 {
        job.lastByteNanos &+ RetryPolicy.nanos(job.request.timeouts.idle)
    }

    /// After the head: arms the idle deadline (unless turned off or later than the total one, which curl enforces).
    private func scheduleIdleDeadline(_ job: TransferJob) {
        guard job.request.timeouts.idle > 0 else { return }
        let due = idleDue(job)
        if due < job.totalDeadline { deadlines.schedule(job, at: due) }
    }

    // MARK: Transfers (loop thread)

    private func accept(_ job: TransferJob) {
        live[ObjectIdentifier(job)] = job
        if let reason = job.invalidReason {
            finish(job, .invalidRequest(reason))
        } else if job.cancelRequested.load(ordering: .acquiring) {
            finish(job, .cancelled)
        } else {
            startAttempt(job)
        }
    }

    private func startAttempt(_ job: TransferJob) {
        let now = MonotonicClock.now()
        guard now < job.totalDeadline else {
            finish(job, .timedOut(endpoint: job.endpoint.name, phase: "total", seconds: job.request.timeouts.total))
            return
        }
        guard let easy = pool.popLast() ?? CurlEasy() else {
            let reason = UpstreamFailureReason(cause: .other, message: "curl_easy_init failed")
            finish(job, .transferFailed(endpoint: job.endpoint.name, reason: reason))
            return
        }
        job.beginAttempt(easy: easy, now: now)
        easy.configure(for: job, configuration: configuration, now: now)
        let firstByteDue = now &+ RetryPolicy.nanos(job.request.timeouts.firstByte)
        if firstByteDue < job.totalDeadline {
            deadlines.schedule(job, at: firstByteDue)
        }
        let rc = multi.add(easy.handle)
        if rc != CURLM_OK {
            let message = "curl_multi_add_handle: " + String(cString: curl_multi_strerror(rc))
            finish(job, .transferFailed(endpoint: job.endpoint.name,
                                        reason: UpstreamFailureReason(cause: .other, message: message)))
        }
    }

    /// Takes the easy handle off the multi, resets it (clearing its pointers to the job) and pools it.
    private func detach(_ job: TransferJob) {
        guard let easy = job.easy else { return }
        job.easy = nil
        multi.remove(easy.handle)
        curl_easy_reset(easy.handle)
        if pool.count < poolLimit { pool.append(easy) }
    }

    private func follow(_ job: TransferJob, _ plan: TransferJob.Plan) {
        job.moveTo(endpointIndex: plan.endpointIndex)
        if plan.delayNanos == 0 {
            startAttempt(job)
        } else {
            job.state = .backoff
            deadlines.schedule(job, at: MonotonicClock.now() &+ plan.delayNanos)
        }
    }

    private func retryOrFinish(_ job: TransferJob, _ error: UpstreamError) {
        if error.isRetryable, let plan = job.nextPlan(now: MonotonicClock.now(), retryAfter: nil) {
            follow(job, plan)
        } else {
            finish(job, error)
        }
    }

    /// The only place a job completes: exactly once, on the loop thread. Removes every reference the scheduler
    /// holds to the job before the handler hears of it (see "Lifetime").
    private func finish(_ job: TransferJob, _ error: UpstreamError?) {
        guard job.state != .done else { return }
        job.state = .done
        detach(job)
        deadlines.remove(job)
        live.removeValue(forKey: ObjectIdentifier(job))
        activeCount.subtract(1, ordering: .relaxed)
        job.complete(error: error)
    }

    /// curl finished the current attempt of `job` with `code`.
    private func attemptEnded(_ job: TransferJob, _ code: CURLcode) {
        guard job.state == .running, let easy = job.easy else { return }
        let failure = code == CURLE_OK ? nil : (message: easy.errorMessage(code), osErrno: easy.osErrno())
        detach(job)
        deadlines.remove(job)
        if job.cancelRequested.load(ordering: .acquiring) {
            finish(job, .cancelled)
            return
        }
        if job.swallowing, let plan = job.plannedNext {
            follow(job, plan)
            return
        }
        guard let failure else {
            if job.committed {
                finish(job, nil)
            } else {
                let reason = UpstreamFailureReason(cause: .emptyReply, message: "response ended without a header block")
                finish(job, .transferFailed(endpoint: job.endpoint.name, reason: reason))
            }
            return
        }
        let error = classify(job, code, message: job.redacted(failure.message), osErrno: failure.osErrno)
        if job.committed {
            finish(job, error)
        } else {
            retryOrFinish(job, error)
        }
    }

    private func classify(_ job: TransferJob, _ code: CURLcode, message: String, osErrno: Int32) -> UpstreamError {
        let name = job.endpoint.name
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            if job.committed || MonotonicClock.now() &+ 5_000_000 >= job.totalDeadline {
                return .timedOut(endpoint: name, phase: "total", seconds: job.request.timeouts.total)
            }
            return .timedOut(endpoint: name, phase: "connect", seconds: job.request.timeouts.connect)
        case CURLE_URL_MALFORMAT:
            return .invalidRequest("endpoint \(name): \(message)")
        default:
            var osErrno = osErrno
            if osErrno == 0, code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST {
                osErrno = Self.socketErrnoNow()  // curl does not keep socket()'s errno: ask again
            }
            var cause = UpstreamFailureReason.Cause(curlCode: code, osErrno: osErrno)
            if cause == .receiveFailed || cause == .sendFailed, message.contains("reset by peer") {
                cause = .connectionReset  // curl did not record the errno, but its message names the reset
            }
            let reason = UpstreamFailureReason(cause: cause, message: message)
            if UpstreamFailureReason.Cause.isConnectFailure(code) {
                return .connectFailed(endpoint: name, reason: reason)
            }
            return .transferFailed(endpoint: name, reason: reason)
        }
    }

    /// The errno of opening a socket right now (EMFILE when the process is out of descriptors), 0 if it works.
    /// Only on a failed connect, whose socket() curl may have failed without recording why.
    static func socketErrnoNow() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return errno }
        Glibc.close(fd)
        return 0
    }

    /// Header callback (inside `curl_multi_socket_action`): the header block of the current attempt is complete.
    /// Returns false to abort the transfer.
    func headerBlockEnded(_ job: TransferJob) -> Bool {
        if job.status >= 100 && job.status < 200 {  // interim response: wait for the real one
            job.forgetInterimHead()
            return true
        }
        deadlines.remove(job)  // first-byte deadline met
        job.lastByteNanos = MonotonicClock.now()
        scheduleIdleDeadline(job)
        if job.request.retry.retryableStatuses.contains(job.status),
           let plan = job.nextPlan(now: MonotonicClock.now(), retryAfter: job.retryAfter) {
            job.swallowing = true
            job.plannedNext = plan
            return true
        }
        job.commitHead()
        return !job.cancelRequested.load(ordering: .relaxed)
    }
}
