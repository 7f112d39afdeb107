/// Something registered with an `EventLoop` for one descriptor. Every method is called on that loop's thread.
package protocol EventLoopHandler: AnyObject {
    /// The descriptor became ready (level-triggered: called again while the condition holds).
    func handleEvents(_ events: EpollEvents)
    /// Called at least every tick interval with the current monotonic time, for timeouts.
    func tick(nowNanos: UInt64)
    /// The loop is stopping: release the descriptor.
    func loopWillStop()
}
