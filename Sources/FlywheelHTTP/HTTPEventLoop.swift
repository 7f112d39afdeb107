import FlywheelSockets

/// The event loop an `HTTPServer` runs its connections on (`FlywheelSockets.EventLoop`), by the name this
/// module has always given it. Components attaching to the server's loops may use either name.
public typealias HTTPEventLoop = EventLoop

/// A one-shot timer of an `HTTPEventLoop` (`FlywheelSockets.EventLoopTimer`).
public typealias HTTPEventLoopTimer = EventLoopTimer
