import Synchronization

/// The caller's side of a submitted generation: lets it stop the work early.
/// Safe to use from any thread.
public final class GenerationHandle: Sendable {
    private let cancelled = Atomic<Bool>(false)

    init() {}

    /// Asks the scheduler to stop this generation; it reports `failed(.cancelled)` soon after
    /// (at the latest after the token or prompt chunk being evaluated).
    public func cancel() { cancelled.store(true, ordering: .relaxed) }

    /// Whether `cancel` was called.
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }
}
