import Dispatch
import Foundation
import Synchronization

/// A thread of its own that runs a job every `interval` seconds (first at once when `runFirst`) until `shutdown`,
/// which wakes it and waits for it to end. The daemon's background work (policy polling, drift checks, the
/// dashboard's figures) runs on these, never on the event loops.
final class BackgroundLoop: Sendable {
    private let name: String
    private let interval: Double
    private let runFirst: Bool
    private let stop = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let running = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)

    init(name: String, interval: Double, runFirst: Bool = false) {
        self.name = name
        self.interval = interval
        self.runFirst = runFirst
    }

    /// Starts the thread once; `makeJob` runs on it and returns the job, so the job's state (connections,
    /// caches) is created on and owned by that thread alone.
    func start(_ makeJob: @escaping @Sendable () -> () -> Void) {
        guard !running.exchange(true, ordering: .relaxed) else { return }
        let thread = Thread { [self] in
            let job = makeJob()
            if runFirst { job() }
            while stop.wait(timeout: .now() + interval) == .timedOut { job() }
            finished.signal()
        }
        thread.name = name
        thread.qualityOfService = .background
        thread.start()
    }

    func shutdown() {
        guard running.load(ordering: .relaxed), !stopped.exchange(true, ordering: .relaxed) else { return }
        stop.signal()
        finished.wait()
    }
}
