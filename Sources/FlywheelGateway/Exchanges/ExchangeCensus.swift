#if DEBUG
import Synchronization

/// Debug builds only: how many exchanges of each kind are alive, so tests can prove that none outlives its
/// request (an exchange, its transfer and the writer's close callback refer to each other until the end).
/// One relaxed atomic add in `init` and one in `deinit`; release builds have none of it.
enum ExchangeCensus {
    static let proxies = Atomic<Int>(0)
    static let locals = Atomic<Int>(0)
}
#endif
