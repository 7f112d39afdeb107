import CCurl
import Glibc
import Dispatch
import Synchronization

/// curl_global_init runs once per process, on first use, thread-safely (Swift global initialisation).
private let curlGlobalInitResult: Int32 = Int32(bitPattern: curl_global_init(Int(CURL_GLOBAL_ALL)).rawValue)

/// One multi handle, a pool of easy handles, a timer heap, and the job / retry logic, driven in one of two ways
/// (the only mode-specific part is how the multi handle is driven and how commands reach it):
/// - thread mode (`launch()`): a dedicated curl thread loops over `curl_multi_perform` + `curl_multi_poll`, and
///   other threads post commands to its inbox (woken with `curl_multi_wakeup`);
/// - driver mode (`init(configuration:driver:)`): no thread; the multi handle runs in `curl_multi_socket_action`
///   mode on an `UpstreamEventDriver`'s loop. curl's sockets are watched through `driver.watch`, curl's timer and
///   the job timer heap each use one driver timer, and commands are applied directly on the driver thread
///   (deferred to the end of the current engine operation when one is in progress, e.g. inside a callback) or
///   hop there with `driver.execute` from other threads. "The curl thread" below means the driver thread then.
///
/// Why `@unchecked Sendable` is safe:
/// - `inbox` (Mutex) and `activeCount` / `loopThread` (atomics) are the only state other threads touch.
/// - `multi` is used by other threads only for `curl_multi_wakeup`, which libcurl documents as callable from any
///   thread, and only while holding the inbox lock with `closed == false`; the curl thread sets `closed` under the
///   same lock before it calls `curl_multi_cleanup`.
/// - Every other `var` (`pool`, `live`, `timers`, the driver-mode state...) is used only on the curl thread, between
///   the thread's start and its end (driver mode: on the driver thread, until the engine closed; a shutdown whose
///   hop the driver dropped — its loop is gone for good — runs on the caller's thread afterwards).
/// - `driver` is an immutable Sendable reference; `driverClosedFlag` / `driverCleaned` are atomics.
final class CurlEngine: @unchecked Sendable {
    let configuration: UpstreamClientConfiguration
    private let multi: UnsafeMutableRawPointer
    private let inbox = Mutex(EngineInbox())
    /// Transfers started and not yet completed (any thread reads it).
    let activeCount = Atomic<Int>(0)
    /// pthread_self() of the curl thread once it runs, 0 before.
    private let loopThread = Atomic<UInt>(0)
    private let joinState = Mutex(JoinState())
    /// Set once the curl thread owns `multi` (and will clean it up); otherwise deinit does.
    private let launched = Atomic<Bool>(false)

    private struct JoinState {
        var thread: pthread_t?
        var joined = false
    }

    /// Non-nil in driver mode.
    private let driver: (any UpstreamEventDriver)?
    /// Driver mode: set (driver thread) when the engine closed; other threads read it to refuse new work.
    private let driverClosedFlag = Atomic<Bool>(false)
    /// Driver mode: `shutdown()` claimed by one caller.
    private let driverShutdownClaimed = Atomic<Bool>(false)
    /// Driver mode: signalled once the engine closed; every waiter signals it again for the next one.
    private let driverDone = DispatchSemaphore(value: 0)
    /// Driver mode: the multi handle was cleaned up.
    private let driverCleaned = Atomic<Bool>(false)

    // Driver-mode state (driver thread only).
    /// Nesting of engine operations on the driver thread; commands arriving while > 0 are deferred.
    private var depth = 0
    private var deferred: [EngineCommand] = []
    /// curl asked for an immediate timeout (`timeout_ms == 0`) from inside an operation: run it when it ends.
    private var kickNeeded = false
    private var driverShutdownRequested = false
    private var driverClosed = false
    /// The driver's loop is gone (a hop was dropped): do not call the driver any more.
    private var driverGone = false
    private var curlTimer: (any UpstreamDriverTimer)?
    /// When the armed `curlTimer` fires.
    private var curlTimerDue: UInt64 = 0
    /// When curl wants its timeout action (nil: never). The armed timer may fire earlier; it then re-arms.
    private var curlWantsTimeoutAt: UInt64?
    private var jobTimer: (any UpstreamDriverTimer)?
    private var jobTimerDue: UInt64 = 0
    private var watched: Set<Int32> = []

    // Curl-thread state.
    private var pool: [CurlEasy] = []
    private let poolLimit: Int
    private var live: [ObjectIdentifier: TransferJob] = [:]
    private var timers = TimerHeap()

    private static let writeCallback: fw_data_callback = { data, size, count, userdata in
        let length = size &* count
        guard let userdata, let data else { return length }
        let job = Unmanaged<TransferJob>.fromOpaque(userdata).takeUnretainedValue()
        return job.engine.receiveBody(job, UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
    }

    private static let headerCallback: fw_data_callback = { data, size, count, userdata in
        let length = size &* count
        guard let userdata, let data else { return length }
        let job = Unmanaged<TransferJob>.fromOpaque(userdata).takeUnretainedValue()
        if job.cancelRequested.load(ordering: .relaxed) { return 0 }
        return job.receiveHeaderLine(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
    }

    /// Any thread (the client's init). Creates the multi handle; thread mode: `launch()` then starts the thread.
    /// Driver mode: sets the socket and timer callbacks; nothing else to start.
    init(configuration: UpstreamClientConfiguration, driver: (any UpstreamEventDriver)? = nil) throws {
        if curlGlobalInitResult != 0 {
            throw UpstreamSetupError(call: "curl_global_init", message: "curl error \(curlGlobalInitResult)")
        }
        guard let multi = curl_multi_init() else {
            throw UpstreamSetupError(call: "curl_multi_init", message: "returned NULL")
        }
        self.multi = multi
        self.configuration = configuration
        self.driver = driver
        poolLimit = max(16, min(configuration.maxTotalConnections, 4096))
        _ = fw_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, max(0, configuration.maxConnectionsPerHost))
        _ = fw_multi_setopt_long(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max(0, configuration.maxTotalConnections))
        _ = fw_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(16, configuration.maxTotalConnections))
        if driver != nil {
            deferred.reserveCapacity(64)
            // Unretained: curl calls back only from inside our own multi calls, all made while the engine lives.
            let me = Unmanaged.passUnretained(self).toOpaque()
            _ = fw_multi_setopt_socketfn(multi, Self.socketCallback)
            _ = fw_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, me)
            _ = fw_multi_setopt_timerfn(multi, Self.timerCallback)
            _ = fw_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, me)
        }
    }

    /// Client init: starts the curl thread.
    func launch() throws {
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { argument in
            let engine = Unmanaged<CurlEngine>.fromOpaque(argument!).takeRetainedValue()
            engine.run()
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<CurlEngine>.fromOpaque(context).release()
            throw UpstreamSetupError(call: "pthread_create", message: String(cString: strerror(rc)))
        }
        launched.store(true, ordering: .releasing)
        joinState.withLock { $0.thread = thread }
    }

    deinit {
        if driver != nil {
            if !driverCleaned.load(ordering: .acquiring) {
                pool.removeAll()
                curl_multi_cleanup(multi)
            }
        } else if !launched.load(ordering: .acquiring) {
            curl_multi_cleanup(multi)
        }
    }

    // MARK: any thread

    /// Any thread: hands a command to the curl thread. Returns false once the engine is closed.
    @discardableResult
    func submit(_ command: EngineCommand) -> Bool {
        if let driver { return driverSubmit(command, driver) }
        return inbox.withLock { box in
            if box.closed { return false }
            box.commands.append(command)
            if !box.wakeupPending {
                box.wakeupPending = true
                _ = curl_multi_wakeup(multi)
            }
            return true
        }
    }

    /// Any thread: starts a job, or completes it at once with `.shutdown` (on the calling thread) when closed.
    func start(_ job: TransferJob) {
        activeCount.add(1, ordering: .relaxed)
        if !submit(.start(job)) {
            completeUnaccepted(job)
        }
    }

    /// A job that never reached the curl thread: the caller's thread owns it and completes it with `.shutdown`.
    private func completeUnaccepted(_ job: TransferJob) {
        activeCount.subtract(1, ordering: .relaxed)
        job.state = .done
        job.completed.store(true, ordering: .releasing)
        let now = MonotonicClock.now()
        let timing = UpstreamTiming(startedNanos: job.startedNanos, firstByteNanos: nil, finishedNanos: now)
        job.handler.upstreamDidComplete(.failure(.shutdown), timing: timing)
    }

    /// Any thread: asks the loop to finish every transfer with `.shutdown` and waits for the thread to end.
    /// From the curl thread itself (inside a handler) it only asks; the thread then ends on its own.
    func shutdown() {
        if let driver {
            driverShutdown(driver)
            return
        }
        inbox.withLock { box in
            if box.closed || box.shutdownRequested { return }
            box.shutdownRequested = true
            if !box.wakeupPending {
                box.wakeupPending = true
                _ = curl_multi_wakeup(multi)
            }
        }
        let onLoopThread = loopThread.load(ordering: .acquiring) == pthread_self()
        joinState.withLock { state in
            guard !state.joined, let thread = state.thread else { return }
            state.joined = true
            if onLoopThread {
                pthread_detach(thread)
            } else {
                pthread_join(thread, nil)
            }
        }
    }

    // MARK: driver mode: entry points (any thread)

    /// Any thread: applies `command` on the driver thread (now, or deferred to the end of the current engine
    /// operation), or hops there. False once the engine closed.
    private func driverSubmit(_ command: EngineCommand, _ driver: any UpstreamEventDriver) -> Bool {
        if driverClosedFlag.load(ordering: .acquiring) { return false }
        if driver.inDriverThread {
            driverCommand(command)
            return true
        }
        let hop: DriverHop
        if case .start(let job) = command {
            // If the driver's loop is gone for good the task is dropped: complete the job then.
            hop = DriverHop { [self] in completeUnaccepted(job) }
        } else {
            hop = DriverHop(onDrop: nil)
        }
        driver.execute { [self] in
            hop.run { driverCommand(command) }
        }
        return true
    }

    /// Any thread. Driver thread, outside any engine operation: closes everything now. Driver thread inside an
    /// operation (a handler callback): closes when that operation ends, before control returns to the driver.
    /// Other threads: hop to the driver thread and wait until closed (or, if the driver dropped the hop because
    /// its loop is gone, close here).
    private func driverShutdown(_ driver: any UpstreamEventDriver) {
        let first = !driverShutdownClaimed.exchange(true, ordering: .acquiringAndReleasing)
        if driver.inDriverThread {
            guard first else { return }
            driverShutdownRequested = true
            if depth == 0 { settle() }
            return
        }
        if first {
            let hop = DriverHop { [self] in
                // The driver thread is gone: nothing else touches the engine any more.
                driverGone = true
                driverShutdownRequested = true
                if !driverClosed { closeDriverMode() }
            }
            driver.execute { [self] in
                hop.run {
                    driverShutdownRequested = true
                    if depth == 0 { settle() }
                }
            }
        }
        driverDone.wait()
        driverDone.signal()  // pass it on to the next waiter
    }

    // MARK: driver mode: driver thread

    private func driverCommand(_ command: EngineCommand) {
        if depth > 0 {
            deferred.append(command)
            return
        }
        depth += 1
        apply(command)
        depth -= 1
        settle()
    }

    private func apply(_ command: EngineCommand) {
        switch command {
        case .start(let job):
            if driverClosed || driverShutdownRequested {
                live[ObjectIdentifier(job)] = job
                finish(job, .failure(.shutdown))
            } else {
                accept(job)
            }
        case .cancel(let job):
            stop(job, with: .cancelled)
        }
    }

    /// Runs at the end of every outermost engine operation on the driver thread: deferred commands, curl's
    /// immediate timeouts, a requested shutdown, then re-arms the job timer.
    private func settle() {
        while !driverClosed {
            if !deferred.isEmpty {
                var commands: [EngineCommand] = []
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
            if driverShutdownRequested {
                depth += 1
                closeDriverMode()
                depth -= 1
                return
            }
            if kickNeeded {
                kickNeeded = false
                socketAction(fw_curl_socket_timeout(), 0)
                continue
            }
            break
        }
        rearmJobTimer()
    }

    /// One `curl_multi_socket_action` and the completions it produced.
    private func socketAction(_ socket: curl_socket_t, _ mask: Int32) {
        depth += 1
        var running: Int32 = 0
        _ = curl_multi_socket_action(multi, socket, mask, &running)
        readMessages()
        depth -= 1
    }

    private func rearmJobTimer() {
        guard let driver, !driverClosed, !driverGone else { return }
        guard let due = timers.nextDue else { return }  // an armed timer just fires once for nothing
        // An armed timer that fires no later is kept (it re-arms when it finds nothing due): no churn when later
        // deadlines are added, as every new request's first-byte deadline is.
        if jobTimer != nil, jobTimerDue <= due { return }
        if let timer = jobTimer { driver.cancel(timer) }
        let now = MonotonicClock.now()
        let milliseconds = due > now ? Int((due - now + 999_999) / 1_000_000) : 0
        jobTimerDue = due
        jobTimer = driver.schedule(afterMilliseconds: milliseconds) { [self] in
            jobTimer = nil
            guard !driverClosed else { return }
            depth += 1
            fireTimers(now: MonotonicClock.now())
            depth -= 1
            settle()
        }
    }

    /// Closes the engine for good: every job completes with `.shutdown`, timers and watches are released, the
    /// easy handles and the multi handle are cleaned up. Driver thread (or the caller's once the driver is gone).
    private func closeDriverMode() {
        driverClosed = true
        driverClosedFlag.store(true, ordering: .releasing)
        var pending: [EngineCommand] = []
        swap(&pending, &deferred)
        shutDownEverything(pending: pending)
        // Deferred commands queued by the completions above (e.g. a handler starting a retry of its own).
        while !deferred.isEmpty {
            var more: [EngineCommand] = []
            swap(&more, &deferred)
            shutDownEverything(pending: more)
        }
        if let driver, !driverGone {
            if let timer = curlTimer { driver.cancel(timer) }
            if let timer = jobTimer { driver.cancel(timer) }
        }
        curlTimer = nil
        jobTimer = nil
        pool.removeAll()  // CurlEasy.deinit runs curl_easy_cleanup
        curl_multi_cleanup(multi)  // may report sockets removed: see socketChanged
        if let driver, !driverGone {
            for descriptor in watched { driver.unwatch(descriptor: descriptor) }
        }
        watched.removeAll()
        driverCleaned.store(true, ordering: .releasing)
        driverDone.signal()
    }

    /// CURLMOPT_SOCKETFUNCTION: curl wants `socket` watched differently (or no more).
    private static let socketCallback: fw_socket_callback = { _, socket, what, userp, _ in
        guard let userp else { return 0 }
        let engine = Unmanaged<CurlEngine>.fromOpaque(userp).takeUnretainedValue()
        return engine.socketChanged(socket, what)
    }

    /// CURLMOPT_TIMERFUNCTION: curl wants `socket_action(CURL_SOCKET_TIMEOUT)` after `timeoutMs` (-1: never).
    private static let timerCallback: fw_timer_callback = { _, timeoutMs, userp in
        guard let userp else { return 0 }
        let engine = Unmanaged<CurlEngine>.fromOpaque(userp).takeUnretainedValue()
        engine.curlTimerChanged(timeoutMs)
        return 0
    }

    private func socketChanged(_ socket: curl_socket_t, _ what: Int32) -> Int32 {
        guard let driver, !driverGone else { return 0 }
        if what == fw_curl_poll_remove() {
            if watched.remove(socket) != nil { driver.unwatch(descriptor: socket) }
            return 0
        }
        if driverClosed { return 0 }
        let readable = what & fw_curl_poll_in() != 0
        let writable = what & fw_curl_poll_out() != 0
        do {
            try driver.watch(descriptor: socket, readable: readable, writable: writable) { [self] r, w, e in
                socketReady(socket, r, w, e)
            }
        } catch {
            return -1  // curl fails the transfer(s) on this socket
        }
        watched.insert(socket)
        return 0
    }

    private func socketReady(_ socket: curl_socket_t, _ readable: Bool, _ writable: Bool, _ error: Bool) {
        guard !driverClosed else { return }
        var mask: Int32 = 0
        if readable { mask |= fw_curl_cselect_in() }
        if writable { mask |= fw_curl_cselect_out() }
        if error { mask |= fw_curl_cselect_err() }
        socketAction(socket, mask)
        settle()
    }

    /// curl's timer callback. curl calls it only when its next timeout changes, so the wanted time is always
    /// recorded; to avoid a cancel + schedule per call, an armed driver timer that fires no later is kept and,
    /// if it fires before curl's time, simply re-arms for it.
    private func curlTimerChanged(_ timeoutMs: Int) {
        guard !driverGone, !driverClosed else { return }
        if timeoutMs < 0 {
            curlWantsTimeoutAt = nil
            return
        }
        if timeoutMs == 0 && depth > 0 {
            curlWantsTimeoutAt = nil
            kickNeeded = true  // settle() runs it right after the current operation: no loop iteration lost
            return
        }
        let due = MonotonicClock.now() &+ UInt64(timeoutMs) &* 1_000_000
        curlWantsTimeoutAt = due
        armCurlTimer(due)
    }

    private func armCurlTimer(_ due: UInt64) {
        guard let driver else { return }
        if curlTimer != nil {
            if curlTimerDue <= due { return }
            driver.cancel(curlTimer!)
        }
        let now = MonotonicClock.now()
        curlTimerDue = due
        curlTimer = driver.schedule(afterMilliseconds: due > now ? Int((due - now + 999_999) / 1_000_000) : 0) {
            [self] in
            curlTimer = nil
            guard !driverClosed, let wanted = curlWantsTimeoutAt else { return }
            if wanted > MonotonicClock.now() &+ 500_000 {
                armCurlTimer(wanted)
                return
            }
            curlWantsTimeoutAt = nil
            socketAction(fw_curl_socket_timeout(), 0)
            settle()
        }
    }

    // MARK: curl thread

    private func run() {
        loopThread.store(pthread_self(), ordering: .releasing)
        var commands: [EngineCommand] = []
        commands.reserveCapacity(256)
        var running: Int32 = 0
        while true {
            var stopping = false
            inbox.withLock { box in
                swap(&box.commands, &commands)
                box.wakeupPending = false
                if box.shutdownRequested {
                    box.closed = true
                    stopping = true
                }
            }
            if stopping {
                shutDownEverything(pending: commands)
                break
            }
            for command in commands {
                switch command {
                case .start(let job): accept(job)
                case .cancel(let job): stop(job, with: .cancelled)
                }
            }
            commands.removeAll(keepingCapacity: true)

            fireTimers(now: MonotonicClock.now())
            _ = curl_multi_perform(multi, &running)
            readMessages()

            var timeoutMs: Int32 = 5000
            if let due = timers.nextDue {
                let now = MonotonicClock.now()
                if due <= now {
                    timeoutMs = 0
                } else {
                    timeoutMs = Int32(min(5000, (due - now + 999_999) / 1_000_000))
                }
            }
            _ = curl_multi_poll(multi, nil, 0, timeoutMs, nil)
        }
        pool.removeAll()  // CurlEasy.deinit runs curl_easy_cleanup
        curl_multi_cleanup(multi)
    }

    private func shutDownEverything(pending: [EngineCommand]) {
        for command in pending {
            if case .start(let job) = command {
                live[ObjectIdentifier(job)] = job
                finish(job, .failure(.shutdown))
            }
        }
        for job in Array(live.values) {
            finish(job, .failure(.shutdown))
        }
    }

    private func accept(_ job: TransferJob) {
        live[ObjectIdentifier(job)] = job
        if let reason = job.invalidReason {
            finish(job, .failure(.invalidRequest(reason)))
        } else if job.cancelRequested.load(ordering: .acquiring) {
            finish(job, .failure(.cancelled))
        } else {
            startAttempt(job)
        }
    }

    /// Cancel (or shutdown) of one job, wherever it is.
    private func stop(_ job: TransferJob, with error: UpstreamError) {
        guard job.state != .done else { return }
        finish(job, .failure(error))
    }

    private func startAttempt(_ job: TransferJob) {
        let now = MonotonicClock.now()
        guard now < job.totalDeadline else {
            finish(job, .failure(.timedOut(endpoint: job.endpoint.name, phase: "total",
                                           seconds: job.request.timeouts.total)))
            return
        }
        guard let easy = pool.popLast() ?? CurlEasy() else {
            finish(job, .failure(.transferFailed(endpoint: job.endpoint.name, message: "curl_easy_init failed")))
            return
        }
        job.attempts += 1
        job.triesOnEndpoint += 1
        job.resetResponse()
        job.attemptStartedNanos = now
        job.easy = easy
        job.state = .running

        let h = easy.handle
        let prepared = job.preparedCurrent()
        let userdata = Unmanaged.passUnretained(job).toOpaque()
        easy.errorBuffer[0] = 0
        _ = prepared.url.withCString { fw_easy_setopt_str(h, CURLOPT_URL, $0) }
        _ = fw_easy_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        _ = fw_easy_setopt_long(h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1)  // a proxy's CONNECT reply is no head
        _ = fw_easy_setopt_ptr(h, CURLOPT_PRIVATE, userdata)
        _ = fw_easy_setopt_ptr(h, CURLOPT_ERRORBUFFER, easy.errorBuffer)
        _ = fw_easy_setopt_datafn(h, CURLOPT_WRITEFUNCTION, Self.writeCallback)
        _ = fw_easy_setopt_ptr(h, CURLOPT_WRITEDATA, userdata)
        _ = fw_easy_setopt_datafn(h, CURLOPT_HEADERFUNCTION, Self.headerCallback)
        _ = fw_easy_setopt_ptr(h, CURLOPT_HEADERDATA, userdata)
        _ = fw_easy_setopt_slist(h, CURLOPT_HTTPHEADER, prepared.headerList)
        _ = configuration.userAgent.withCString { fw_easy_setopt_str(h, CURLOPT_USERAGENT, $0) }
        let timeouts = job.request.timeouts
        _ = fw_easy_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(RetryPolicy.nanos(timeouts.connect)))
        _ = fw_easy_setopt_long(h, CURLOPT_TIMEOUT_MS, Self.milliseconds(job.totalDeadline - now))
        if !configuration.verifyTLS {
            _ = fw_easy_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 0)
            _ = fw_easy_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 0)
        }
        if let ca = configuration.caBundlePath {
            _ = ca.withCString { fw_easy_setopt_str(h, CURLOPT_CAINFO, $0) }
        }
        let method = job.request.method
        switch method {
        case "GET" where job.bodyCount == 0:
            _ = fw_easy_setopt_long(h, CURLOPT_HTTPGET, 1)
        case "POST":
            _ = fw_easy_setopt_long(h, CURLOPT_POST, 1)
            _ = fw_easy_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(job.bodyCount))
            _ = fw_easy_setopt_ptr(h, CURLOPT_POSTFIELDS, job.bodyBytes)
        case "HEAD" where job.bodyCount == 0:
            _ = fw_easy_setopt_long(h, CURLOPT_NOBODY, 1)
        default:
            if job.bodyCount > 0 {
                _ = fw_easy_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(job.bodyCount))
                _ = fw_easy_setopt_ptr(h, CURLOPT_POSTFIELDS, job.bodyBytes)
            }
            _ = method.withCString { fw_easy_setopt_str(h, CURLOPT_CUSTOMREQUEST, $0) }
        }

        let firstByteDue = now &+ RetryPolicy.nanos(timeouts.firstByte)
        if firstByteDue < job.totalDeadline {
            timers.schedule(job, at: firstByteDue)
        }
        let rc = curl_multi_add_handle(multi, h)
        if rc != CURLM_OK {
            timers.remove(job)
            let message = String(cString: curl_multi_strerror(rc))
            finish(job, .failure(.transferFailed(endpoint: job.endpoint.name, message: "curl_multi_add_handle: \(message)")))
        }
    }

    /// Takes the easy handle off the multi and back into the pool.
    private func detach(_ job: TransferJob) {
        guard let easy = job.easy else { return }
        job.easy = nil
        _ = curl_multi_remove_handle(multi, easy.handle)
        curl_easy_reset(easy.handle)
        if pool.count < poolLimit { pool.append(easy) }
    }

    private func schedule(_ job: TransferJob, _ plan: TransferJob.Plan) {
        if plan.endpointIndex != job.endpointIndex {
            job.endpointIndex = plan.endpointIndex
            job.triesOnEndpoint = 0
        }
        if plan.delayNanos == 0 {
            startAttempt(job)
        } else {
            job.state = .backoff
            timers.schedule(job, at: MonotonicClock.now() &+ plan.delayNanos)
        }
    }

    /// The only place a job completes: exactly once, on the curl thread.
    private func finish(_ job: TransferJob, _ result: Result<Void, UpstreamError>) {
        guard job.state != .done else { return }
        job.state = .done
        detach(job)
        timers.remove(job)
        live.removeValue(forKey: ObjectIdentifier(job))
        job.completed.store(true, ordering: .releasing)
        activeCount.subtract(1, ordering: .relaxed)
        let timing = UpstreamTiming(startedNanos: job.startedNanos, firstByteNanos: job.firstByteNanos,
                                    finishedNanos: MonotonicClock.now())
        job.handler.upstreamDidComplete(result.map { timing }, timing: timing)
    }

    private func fireTimers(now: UInt64) {
        while let job = timers.popDue(now: now) {
            switch job.state {
            case .backoff:
                startAttempt(job)
            case .running where !job.committed && !job.swallowing:
                detach(job)
                let error = UpstreamError.timedOut(endpoint: job.endpoint.name, phase: "first byte",
                                                   seconds: job.request.timeouts.firstByte)
                retryOrFinish(job, error)
            default:
                break
            }
        }
    }

    private func retryOrFinish(_ job: TransferJob, _ error: UpstreamError) {
        if error.isRetryable, let plan = job.nextPlan(now: MonotonicClock.now(), retryAfter: nil) {
            schedule(job, plan)
        } else {
            finish(job, .failure(error))
        }
    }

    private func readMessages() {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            var pointer: UnsafeMutableRawPointer?
            _ = fw_easy_getinfo_ptr(easy, CURLINFO_PRIVATE, &pointer)
            guard let pointer else { continue }
            let job = Unmanaged<TransferJob>.fromOpaque(pointer).takeUnretainedValue()
            transferDone(job, code)
        }
    }

    private func transferDone(_ job: TransferJob, _ code: CURLcode) {
        guard job.state == .running else { return }
        let errorText = code == CURLE_OK ? "" : (job.easy?.errorMessage(code) ?? "curl error \(code.rawValue)")
        detach(job)
        timers.remove(job)
        if job.cancelRequested.load(ordering: .acquiring) {
            finish(job, .failure(.cancelled))
            return
        }
        if job.swallowing, let plan = job.plannedNext {
            schedule(job, plan)
            return
        }
        let name = job.endpoint.name
        if code == CURLE_OK {
            if job.committed {
                finish(job, .success(()))
            } else {
                finish(job, .failure(.transferFailed(endpoint: name, message: "response ended without a header block")))
            }
            return
        }
        let error = classify(job, code, message: job.redacted(errorText))
        if job.committed {
            finish(job, .failure(error))
        } else {
            retryOrFinish(job, error)
        }
    }

    private func classify(_ job: TransferJob, _ code: CURLcode, message: String) -> UpstreamError {
        let name = job.endpoint.name
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT,
             CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
             CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
             CURLE_SSL_INVALIDCERTSTATUS:
            return .connectFailed(endpoint: name, message: message)
        case CURLE_OPERATION_TIMEDOUT:
            let now = MonotonicClock.now()
            if job.committed || now &+ 5_000_000 >= job.totalDeadline {
                return .timedOut(endpoint: name, phase: "total", seconds: job.request.timeouts.total)
            }
            return .timedOut(endpoint: name, phase: "connect", seconds: job.request.timeouts.connect)
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            return .invalidRequest("endpoint \(name): \(message)")
        default:
            return .transferFailed(endpoint: name, message: message)
        }
    }

    // MARK: callbacks (curl thread, inside curl_multi_perform)

    /// The header block of the current attempt is complete. Returns false to abort the transfer.
    func headerBlockEnded(_ job: TransferJob) -> Bool {
        if job.status >= 100 && job.status < 200 {  // interim response: wait for the real one
            job.status = 0
            job.responseHeaders.removeAll(keepingCapacity: true)
            job.retryAfter = nil
            return true
        }
        timers.remove(job)  // first-byte deadline met
        if job.request.retry.retryableStatuses.contains(job.status),
           let plan = job.nextPlan(now: MonotonicClock.now(), retryAfter: job.retryAfter) {
            job.swallowing = true
            job.plannedNext = plan
            return true
        }
        job.committed = true
        let head = UpstreamResponseHead(status: job.status, headers: job.responseHeaders,
                                        endpoint: job.endpoint.name, attempts: job.attempts)
        job.handler.upstreamDidReceiveHead(head)
        return !job.cancelRequested.load(ordering: .relaxed)
    }

    /// Body bytes of the current attempt. Returns false to abort the transfer.
    func receiveBody(_ job: TransferJob, _ bytes: UnsafeRawBufferPointer) -> Bool {
        if job.cancelRequested.load(ordering: .relaxed) { return false }
        if job.committed {
            if job.firstByteNanos == nil { job.firstByteNanos = MonotonicClock.now() }
            job.handler.upstreamDidReceiveBody(Array(bytes))
            return true
        }
        if job.swallowing {
            job.swallowedBytes += bytes.count
            return job.swallowedBytes <= 65_536  // a huge error body is not worth draining: drop the connection
        }
        return true
    }

    private static func milliseconds(_ nanos: UInt64) -> Int {
        Int(max(1, min(nanos / 1_000_000, UInt64(Int32.max))))
    }
}

/// A task sent to a driver with `execute`: `onDrop` runs (on whichever thread releases it) if the driver
/// dropped the task without running it, which drivers do only once their loop is gone for good.
final class DriverHop: @unchecked Sendable {
    // Safety: `onDrop` is cleared by `run` on the driver thread; `deinit` runs after the last release, which is
    // after `run` returned (the driver releases the task after running it), so they never overlap.
    private var onDrop: (() -> Void)?

    init(onDrop: (() -> Void)?) { self.onDrop = onDrop }

    func run(_ body: () -> Void) {
        onDrop = nil
        body()
    }

    deinit { onDrop?() }
}
