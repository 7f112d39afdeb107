internal import FlywheelTimers

/// A one-shot timer of an `HTTPEventLoop`, returned by `schedule(afterMilliseconds:_:)`; pass it to `cancel`.
/// A token: copying it refers to the same timer. `Sendable` so it can be handed around; only its loop's thread
/// reads or changes the timer behind it.
public struct HTTPEventLoopTimer: @unchecked Sendable {
    // Safety: `LoopTimer` state is read and written only on the owning loop's thread (the scheduling,
    // cancelling and firing methods all trap elsewhere).
    let timer: LoopTimer

    /// True until it fired or was cancelled. Loop thread only.
    public var isPending: Bool { timer.callback != nil }
}

/// A scheduled callback in a loop's `DeadlineHeap`. Loop thread only.
final class LoopTimer: DeadlineHeapElement {
    let deadlineNanos: UInt64
    var heapIndex = -1
    var callback: (() -> Void)?

    init(due: UInt64, callback: @escaping () -> Void) {
        self.deadlineNanos = due
        self.callback = callback
    }
}

/// The loop's pending timers, earliest first. Loop thread only.
typealias LoopTimerHeap = DeadlineHeap<LoopTimer>

/// A descriptor some other component owns, watched through `HTTPEventLoop.watch`. Loop thread only.
final class ForeignWatcher: EventLoopHandler {
    var callback: (_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void

    init(_ callback: @escaping (_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void) {
        self.callback = callback
    }

    func handleEvents(_ events: EpollEvents) {
        let error = !events.isDisjoint(with: [.error, .hangup])
        callback(events.contains(.input) || events.contains(.readHangup), events.contains(.output), error)
    }

    func tick(nowNanos: UInt64) {}
    func loopWillStop() {}
}
