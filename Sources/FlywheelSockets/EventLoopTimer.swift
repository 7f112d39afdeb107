internal import FlywheelTimers

/// A one-shot timer of an `EventLoop`, returned by `schedule(afterMilliseconds:_:)`; pass it to `cancel`.
/// A token: copying it refers to the same timer. `Sendable` so it can be handed around; only its loop's thread
/// reads or changes the timer behind it.
public struct EventLoopTimer: @unchecked Sendable {
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
