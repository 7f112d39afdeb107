import FlywheelHTTP

/// Another target ready to take a request over when the one answering fails before anything reached the
/// client: an error, an overload, or no first token within `firstTokenBudget`. Given to an exchange by a
/// traffic policy with fallbacks; the exchange that hands over neither answers nor logs.
struct Fallback: Sendable {
    /// Whether a next target is left (asked before giving up on a slow first token).
    let isAvailable: @Sendable () -> Bool
    /// Starts the next target; `reason` says why this one gave way (`overloaded`, `upstream_status_503`,
    /// `first_token_budget`, ...).
    let takeOver: @Sendable (_ reason: String) -> Void
    /// Seconds the target may take to its first token (or, for a buffered upstream answer, its head).
    let firstTokenBudget: Double?

    /// Loop thread only. Starts the first-token budget's timer on `loop`, or nothing when there is no budget.
    func startBudget(on loop: HTTPEventLoop, _ expired: @escaping () -> Void) -> HTTPEventLoopTimer? {
        firstTokenBudget.map { loop.schedule(afterMilliseconds: Int(($0 * 1000).rounded(.up)), expired) }
    }

    /// Hands over when a next target is left; false when the caller must answer the failure itself.
    func handOver(_ reason: String) -> Bool {
        guard isAvailable() else { return false }
        takeOver(reason)
        return true
    }
}
