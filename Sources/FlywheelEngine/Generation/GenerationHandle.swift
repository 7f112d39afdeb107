import Synchronization

/// The caller's side of a submitted generation: lets it stop the work early.
/// Safe to use from any thread.
public final class GenerationHandle: Sendable {
    private let cancelled = Atomic<Bool>(false)
    private let generated = Atomic<Int>(0)
    /// Takes the generation out of the scheduler's queue if it is still waiting there.
    private let withdraw: @Sendable (GenerationHandle) -> Void

    init(withdraw: @escaping @Sendable (GenerationHandle) -> Void = { _ in }) {
        self.withdraw = withdraw
    }

    /// Stops this generation; it reports `failed(.cancelled)` exactly once.
    ///
    /// A generation still waiting for a slot leaves the queue at once (its place goes to the next
    /// request) and its `failed(.cancelled)` is delivered on the calling thread before `cancel`
    /// returns, so do not hold a lock the event handler takes. A running one stops on the scheduler
    /// thread after the token or prompt chunk being evaluated.
    public func cancel() {
        guard !cancelled.exchange(true, ordering: .relaxed) else { return }
        withdraw(self)
    }

    /// Tokens generated so far (the scheduler counts them as it samples), so a generation that ends early
    /// can still be accounted for.
    public var generatedTokens: Int { generated.load(ordering: .relaxed) }

    func countGeneratedToken() { generated.add(1, ordering: .relaxed) }

    /// Whether `cancel` was called.
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }
}
