import FlywheelSockets

/// Per-event-loop HTTP scratch state shared by that loop's connections: the cached Date line and reusable
/// buffers for response heads and chunk prefixes. Not thread-safe: used only on its loop's thread.
final class HTTPLoopContext {
    let loop: EventLoop
    let server: HTTPServerState
    var dateCache = HTTPDateCache()
    /// Reused for every response head built on this loop (taken and given back, so it stays uniquely owned).
    var headBuffer: [UInt8] = []
    var chunkPrefixBuffer: [UInt8] = []

    init(loop: EventLoop, server: HTTPServerState) {
        self.loop = loop
        self.server = server
        headBuffer.reserveCapacity(1024)
        chunkPrefixBuffer.reserveCapacity(32)
    }
}
