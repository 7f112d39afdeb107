#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM, SIGINT (stop) and SIGHUP (reload) for the daemon: the signals are blocked in every thread and one
/// thread waits for them with `sigwait`, so no async-signal-safety rules constrain what shutdown or a reload does.
public enum TerminationSignals {
    private static func set() -> sigset_t {
        var s = sigset_t()
        sigemptyset(&s)
        sigaddset(&s, SIGTERM)
        sigaddset(&s, SIGINT)
        sigaddset(&s, SIGHUP)
        return s
    }

    /// Must be called before any thread starts, so that every thread inherits the mask.
    public static func block() {
        var s = set()
        pthread_sigmask(SIG_BLOCK, &s, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Blocks the calling thread until SIGTERM, SIGINT or SIGHUP arrives; returns the signal number.
    public static func wait() -> Int32 {
        var s = set()
        var received: Int32 = 0
        while sigwait(&s, &received) != 0 {}
        return received
    }

    /// Restores default handling (so a second Ctrl-C during a long drain still stops the process).
    public static func unblock() {
        var s = set()
        pthread_sigmask(SIG_UNBLOCK, &s, nil)
    }
}
