/// The event loop an upstream client runs on (curl_multi_socket_action mode), e.g. one of the HTTP server's event
/// loops; "the driver's loop thread" in this module's docs is its thread. See `UpstreamClient`.
///
/// Contract the client relies on:
/// - `inDriverThread` and `execute` may be called from any thread; `execute` runs tasks on the driver thread in
///   FIFO order, never inline, and may drop a task (release it without running it) only once the loop has
///   stopped for good.
/// - `watch`, `unwatch`, `schedule` and `cancel` are called only on the driver thread, possibly from inside
///   one of their own callbacks. `watch` on an already watched descriptor replaces its interest and callback;
///   `unwatch` of an unknown descriptor is a no-op and never closes it. Watch callbacks are level-triggered.
/// - Callbacks run on the driver thread, one at a time; after `unwatch` / `cancel` returns, the corresponding
///   callback is not called any more (not even for a report fetched earlier in the same iteration).
public protocol UpstreamEventDriver: AnyObject, Sendable {
    /// True when called on the driver's thread.
    var inDriverThread: Bool { get }
    /// Any thread. Runs `task` later on the driver thread (see the contract above).
    func execute(_ task: @escaping @Sendable () -> Void)
    /// Driver thread. Watches `descriptor` for readability / writability; errors and hang-ups are always reported.
    func watch(
        descriptor: Int32, readable: Bool, writable: Bool,
        _ callback: @escaping (_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void
    ) throws
    /// Driver thread. Stops watching `descriptor` without closing it.
    func unwatch(descriptor: Int32)
    /// Driver thread. One-shot timer, millisecond precision.
    func schedule(afterMilliseconds: Int, _ callback: @escaping () -> Void) -> any UpstreamDriverTimer
    /// Driver thread. The timer will not fire (no-op if it fired or was cancelled already).
    func cancel(_ timer: any UpstreamDriverTimer)
}

/// A timer token returned by `UpstreamEventDriver.schedule`.
public protocol UpstreamDriverTimer: AnyObject {}
