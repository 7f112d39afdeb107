import FlywheelSockets
import Synchronization

/// State shared by all loops of one server: configuration, responder, counters, shutdown flags.
/// Thread-safe: immutable lets, atomics and the limits behind a lock.
final class HTTPServerState: Sendable {
    /// As the server was created; the limits in it may since have changed (`limits`).
    let configuration: HTTPServerConfiguration
    let responder: any HTTPResponder
    /// The limits in force (`HTTPServer.updateLimits`); the hot ones are mirrored in atomics below.
    private let currentLimits: Mutex<HTTPServerLimits>
    private let requestTimeout = Atomic<UInt64>(0)
    private let idleTimeout = Atomic<UInt64>(0)
    private let writeTimeout = Atomic<UInt64>(0)
    let maxConnections = Atomic<Int>(0)
    private let maxBufferedBodyBytes = Atomic<Int>(0)
    var requestTimeoutNanos: UInt64 { requestTimeout.load(ordering: .relaxed) }
    var idleTimeoutNanos: UInt64 { idleTimeout.load(ordering: .relaxed) }
    var writeTimeoutNanos: UInt64 { writeTimeout.load(ordering: .relaxed) }
    let tlsHandshakeTimeoutNanos: UInt64
    /// The TLS context new connections are accepted with (nil: plain HTTP); replaced by a reload.
    let tlsContext: Mutex<TLSContext?>
    /// `SSL` objects alive, and handshakes that failed.
    let tlsSessions = TLSSessionCounter()

    /// Accepted sockets not yet closed (including ones answering 503 or lingering before close).
    let openConnections = Atomic<Int>(0)
    /// Connections in their final lingering phase (response sent, waiting for the client to close).
    let lingeringConnections = Atomic<Int>(0)
    /// Requests handed to the responder whose response has not ended.
    let inFlight = Atomic<Int>(0)
    /// Request-body bytes reserved by connections receiving a body (see `maxBufferedBodyBytes`).
    let bufferedBodyBytes = Atomic<Int>(0)
    /// Set at the start of a graceful shutdown: no new keep-alive, idle connections close.
    let isDraining = Atomic<Bool>(false)
    /// Set when the shutdown grace period is over: responses still running are told (`.serverShutdown`) and
    /// their connections close after flushing what the responders wrote.
    let isEndingResponses = Atomic<Bool>(false)
    /// Set when the final flush after the grace period is over too: every connection closes now.
    let isForceClosing = Atomic<Bool>(false)

    init(configuration: HTTPServerConfiguration, responder: any HTTPResponder) {
        self.configuration = configuration
        self.responder = responder
        tlsHandshakeTimeoutNanos = MonotonicClock.nanoseconds(configuration.tlsHandshakeTimeout)
        tlsContext = Mutex(configuration.tls)
        currentLimits = Mutex(configuration.limits)
        setLimits(configuration.limits)
    }

    /// The limits in force. Any thread.
    var limits: HTTPServerLimits { currentLimits.withLock { $0 } }

    /// Replaces the limits; see `HTTPServerLimits` for when each takes effect. Any thread.
    func setLimits(_ limits: HTTPServerLimits) {
        currentLimits.withLock { $0 = limits }
        requestTimeout.store(MonotonicClock.nanoseconds(limits.requestTimeout), ordering: .relaxed)
        idleTimeout.store(MonotonicClock.nanoseconds(limits.idleTimeout), ordering: .relaxed)
        writeTimeout.store(MonotonicClock.nanoseconds(limits.writeTimeout), ordering: .relaxed)
        maxConnections.store(limits.maxConnections, ordering: .relaxed)
        maxBufferedBodyBytes.store(limits.maxBufferedBodyBytes, ordering: .relaxed)
    }

    /// Reserves `count` more body bytes from the server-wide budget; false (nothing reserved) if that would
    /// pass `maxBufferedBodyBytes`. Any thread.
    func reserveBodyBytes(_ count: Int) -> Bool {
        let limit = maxBufferedBodyBytes.load(ordering: .relaxed)
        guard limit > 0 else {
            bufferedBodyBytes.add(count, ordering: .relaxed)
            return true
        }
        var current = bufferedBodyBytes.load(ordering: .relaxed)
        while true {
            guard count <= limit - current else { return false }
            let (exchanged, actual) = bufferedBodyBytes.compareExchange(
                expected: current, desired: current + count, ordering: .relaxed)
            if exchanged { return true }
            current = actual
        }
    }

    /// Gives back bytes taken with `reserveBodyBytes`. Any thread.
    func releaseBodyBytes(_ count: Int) {
        bufferedBodyBytes.subtract(count, ordering: .relaxed)
    }

    /// The loop tick: often enough to enforce the shortest timeout within a quarter of it, at most 250 ms.
    var tickNanos: UInt64 {
        var timeouts = [requestTimeoutNanos, idleTimeoutNanos, writeTimeoutNanos]
        if configuration.tls != nil { timeouts.append(tlsHandshakeTimeoutNanos) }
        let positive = timeouts.filter { $0 > 0 }
        let shortest: UInt64 = positive.min() ?? 1_000_000_000
        return min(250_000_000, max(10_000_000, shortest / 4))
    }
}
