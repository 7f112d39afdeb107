/// Carries a value owned by one event loop through Sendable code (a writer, a task closure).
/// The value is only reachable through `value`, which traps unless called on the owning loop's thread.
package struct LoopBound<Value>: @unchecked Sendable {
    // Safety: `storage` is only ever touched via `value`, whose precondition guarantees we are on `loop`'s
    // single thread, so the non-Sendable value is never used concurrently. Moving the reference itself
    // between threads is fine (reference counting is atomic).
    package let loop: EventLoop
    private let storage: Value

    package init(_ value: Value, loop: EventLoop) {
        self.loop = loop
        self.storage = value
    }

    package var value: Value {
        loop.preconditionInEventLoop()
        return storage
    }
}
