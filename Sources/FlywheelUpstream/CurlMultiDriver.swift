import CCurl
import Glibc

/// curl_global_init runs once per process, on first use, thread-safely (Swift global initialisation).
private let curlGlobalInitResult: Int32 = Int32(bitPattern: curl_global_init(Int(CURL_GLOBAL_ALL)).rawValue)

/// What a `CurlMultiDriver` reports to its owner. Loop thread only.
protocol CurlMultiDriverDelegate: AnyObject {
    /// The transfer of `easy` ended with `code` (read with `curl_multi_info_read`, outside curl's callbacks but
    /// while the driver `isBusy`).
    func curlTransferDidEnd(_ easy: UnsafeMutableRawPointer, code: CURLcode)
    /// The driver ran curl on its own (a watched socket became ready, curl's timer fired) and is idle again:
    /// the owner may apply whatever it deferred meanwhile.
    func curlDriverDidBecomeIdle()
}

/// One libcurl multi handle in `curl_multi_socket_action` mode on an `UpstreamEventDriver`'s loop: curl's
/// sockets are watched with the loop's `watch`, curl's timeout is one loop timer, and when either fires the
/// driver runs `curl_multi_socket_action` and reports the transfers that ended to its delegate.
///
/// Thread rules: every method, and every callback it registers, runs on the driver's loop thread; `init` may run
/// on any thread before first use. The one exception: once the loop has stopped for good, the owner calls
/// `loopDidStop()` and then may use the driver (remove handles, `close`) from another thread, as nothing else
/// can run then; the driver no longer touches the loop.
///
/// Re-entrancy: curl forbids multi calls from inside its callbacks (header, body, socket, timer). `isBusy` is
/// true while a multi call or the reading of its results is in progress; the owner must defer any multi call
/// wanted meanwhile (e.g. a handler starting a transfer) until `curlDriverDidBecomeIdle` or until its own call
/// into the driver returned. An immediate timeout that curl asks for meanwhile is remembered and run by
/// `runPendingTimeout()`.
final class CurlMultiDriver {
    private let multi: UnsafeMutableRawPointer
    private let loop: any UpstreamEventDriver
    /// The scheduler that owns this driver.
    weak var delegate: (any CurlMultiDriverDelegate)?

    /// Nesting of multi calls in progress.
    private var depth = 0
    /// curl asked for a `CURL_SOCKET_TIMEOUT` action at once (timeout 0) while busy.
    private var timeoutPending = false
    private(set) var isClosed = false
    /// The loop stopped for good: do not call it any more.
    private var loopGone = false
    private var curlTimer: (any UpstreamDriverTimer)?
    /// When the armed `curlTimer` fires.
    private var curlTimerDue: UInt64 = 0
    /// When curl wants its timeout action (nil: never). The armed timer may fire earlier; it then re-arms.
    private var curlWantsTimeoutAt: UInt64?
    private var watched: Set<Int32> = []

    /// Any thread, before first use. Creates the multi handle with the connection limits and callbacks.
    init(configuration: UpstreamClientConfiguration, loop: any UpstreamEventDriver) throws {
        if curlGlobalInitResult != 0 {
            throw UpstreamSetupError(call: "curl_global_init", message: "curl error \(curlGlobalInitResult)")
        }
        guard let multi = curl_multi_init() else {
            throw UpstreamSetupError(call: "curl_multi_init", message: "returned NULL")
        }
        self.multi = multi
        self.loop = loop
        _ = fw_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, max(0, configuration.maxConnectionsPerHost))
        _ = fw_multi_setopt_long(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max(0, configuration.maxTotalConnections))
        _ = fw_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(16, configuration.maxTotalConnections))
        // Unretained: curl calls back only from inside our own multi calls, all made while the driver lives
        // (curl_multi_cleanup included, which runs in `close` or `deinit`).
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = fw_multi_setopt_socketfn(multi, Self.socketCallback)
        _ = fw_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, me)
        _ = fw_multi_setopt_timerfn(multi, Self.timerCallback)
        _ = fw_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, me)
    }

    /// Only reached without `close` if the loop never held a callback of ours (those retain the driver) or
    /// dropped them when it stopped: the loop is not called.
    deinit {
        if !isClosed {
            loopGone = true
            curl_multi_cleanup(multi)
        }
    }

    /// True while a multi call (or the reading of its results) is in progress: see "Re-entrancy".
    var isBusy: Bool { depth > 0 }

    /// Adds a configured easy handle. curl asks for an immediate timeout action, which `runPendingTimeout` runs.
    func add(_ easy: UnsafeMutableRawPointer) -> CURLMcode {
        depth += 1
        defer { depth -= 1 }
        return curl_multi_add_handle(multi, easy)
    }

    /// Takes an easy handle off the multi (a no-op for one that is not on it).
    func remove(_ easy: UnsafeMutableRawPointer) {
        depth += 1
        _ = curl_multi_remove_handle(multi, easy)
        depth -= 1
    }

    /// Runs the timeout action curl asked for while busy. False when none was pending.
    func runPendingTimeout() -> Bool {
        guard timeoutPending, !isClosed else { return false }
        timeoutPending = false
        socketAction(fw_curl_socket_timeout(), 0)
        return true
    }

    /// The loop stopped for good: from now on the driver never calls it (sockets and timers it held are gone
    /// with it). Called by the owner before it finishes its transfers off the loop thread.
    func loopDidStop() {
        loopGone = true
        curlTimer = nil
        watched.removeAll()
    }

    /// Cancels curl's timer, cleans up the multi handle (closing its cached connections) and unwatches every
    /// socket (unless the loop stopped). Every easy handle must have been removed before.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        if let timer = curlTimer, !loopGone { loop.cancel(timer) }
        curlTimer = nil
        curl_multi_cleanup(multi)  // reports its sockets removed: see socketChanged
        if !loopGone {
            for descriptor in watched { loop.unwatch(descriptor: descriptor) }
        }
        watched.removeAll()
    }

    // MARK: curl_multi_socket_action

    /// One `curl_multi_socket_action` and the transfers it ended.
    private func socketAction(_ socket: curl_socket_t, _ mask: Int32) {
        depth += 1
        var running: Int32 = 0
        _ = curl_multi_socket_action(multi, socket, mask, &running)
        var remaining: Int32 = 0
        while !isClosed, let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            delegate?.curlTransferDidEnd(easy, code: message.pointee.data.result)
        }
        depth -= 1
    }

    /// CURLMOPT_SOCKETFUNCTION: curl wants `socket` watched differently (or no more).
    private static let socketCallback: fw_socket_callback = { _, socket, what, userp, _ in
        guard let userp else { return 0 }
        return Unmanaged<CurlMultiDriver>.fromOpaque(userp).takeUnretainedValue().socketChanged(socket, what)
    }

    /// CURLMOPT_TIMERFUNCTION: curl wants `socket_action(CURL_SOCKET_TIMEOUT)` after `timeoutMs` (-1: never).
    private static let timerCallback: fw_timer_callback = { _, timeoutMs, userp in
        guard let userp else { return 0 }
        Unmanaged<CurlMultiDriver>.fromOpaque(userp).takeUnretainedValue().curlTimerChanged(timeoutMs)
        return 0
    }

    private func socketChanged(_ socket: curl_socket_t, _ what: Int32) -> Int32 {
        if what == fw_curl_poll_remove() {
            if watched.remove(socket) != nil, !loopGone { loop.unwatch(descriptor: socket) }
            return 0
        }
        guard !isClosed, !loopGone else { return 0 }
        let readable = what & fw_curl_poll_in() != 0
        let writable = what & fw_curl_poll_out() != 0
        do {
            try loop.watch(descriptor: socket, readable: readable, writable: writable) { [self] r, w, e in
                socketReady(socket, r, w, e)
            }
        } catch {
            return -1  // curl fails the transfer(s) on this socket
        }
        watched.insert(socket)
        return 0
    }

    private func socketReady(_ socket: curl_socket_t, _ readable: Bool, _ writable: Bool, _ error: Bool) {
        guard !isClosed else { return }
        var mask: Int32 = 0
        if readable { mask |= fw_curl_cselect_in() }
        if writable { mask |= fw_curl_cselect_out() }
        if error { mask |= fw_curl_cselect_err() }
        socketAction(socket, mask)
        delegate?.curlDriverDidBecomeIdle()
    }

    /// curl's timer callback. curl calls it only when its next timeout changes, so the wanted time is always
    /// recorded; to avoid a cancel + schedule per call, an armed loop timer that fires no later is kept and,
    /// if it fires before curl's time, simply re-arms for it.
    private func curlTimerChanged(_ timeoutMs: Int) {
        guard !loopGone, !isClosed else { return }
        if timeoutMs < 0 {
            curlWantsTimeoutAt = nil
            return
        }
        if timeoutMs == 0 && depth > 0 {
            curlWantsTimeoutAt = nil
            timeoutPending = true  // run right after the current operation: no loop iteration lost
            return
        }
        let due = MonotonicClock.now() &+ UInt64(timeoutMs) &* 1_000_000
        curlWantsTimeoutAt = due
        armCurlTimer(due)
    }

    private func armCurlTimer(_ due: UInt64) {
        if let timer = curlTimer {
            if curlTimerDue <= due { return }
            loop.cancel(timer)
        }
        let now = MonotonicClock.now()
        curlTimerDue = due
        curlTimer = loop.schedule(afterMilliseconds: due > now ? Int((due - now + 999_999) / 1_000_000) : 0) {
            [self] in
            curlTimer = nil
            guard !isClosed, let wanted = curlWantsTimeoutAt else { return }
            if wanted > MonotonicClock.now() &+ 500_000 {
                armCurlTimer(wanted)
                return
            }
            curlWantsTimeoutAt = nil
            socketAction(fw_curl_socket_timeout(), 0)
            delegate?.curlDriverDidBecomeIdle()
        }
    }
}
