/// A task sent to a driver with `execute`: `onDrop` runs (on whichever thread releases it) if the driver
/// dropped the task without running it, which drivers do only once their loop is gone for good.
final class DriverHop: @unchecked Sendable {
    // Safety: `onDrop` is cleared by `run` on the loop thread; `deinit` runs after the last release, which is
    // after `run` returned (the driver releases the task after running it), so they never overlap.
    private var onDrop: (() -> Void)?

    init(onDrop: (() -> Void)?) { self.onDrop = onDrop }

    func run(_ body: () -> Void) {
        onDrop = nil
        body()
    }

    deinit { onDrop?() }
}
