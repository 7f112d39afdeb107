/// The order of a paged request query: by `createdAtMillis`, ties broken by `id` (unique), so the order
/// is total and a page boundary never falls between indistinguishable rows.
public enum LogOrder: Sendable, Equatable {
    case oldestFirst
    case newestFirst
}
