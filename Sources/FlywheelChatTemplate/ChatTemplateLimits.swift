/// Resource bounds for one render, so a hostile template cannot hang or exhaust memory.
public struct ChatTemplateLimits: Sendable, Equatable {
    /// Bytes of text a render may produce (including text captured by `set` blocks and macros).
    public var maxOutputBytes: Int
    /// Loop iterations across the whole render.
    public var maxLoopIterations: Int
    /// Nested macro calls.
    public var maxCallDepth: Int
    /// The longest list `range(...)` may build (Jinja's sandbox uses the same bound).
    public var maxRangeLength: Int
    /// Value nodes a render may inspect when checking the nesting of lists and dicts it builds
    /// (lists can share storage, so a value built by doubling has exponentially many nodes).
    public var maxInspectedNodes: Int

    /// The defaults are generous for real chat templates (which render a few KB) and small
    /// enough to stop a hostile one quickly.
    public init(
        maxOutputBytes: Int = 8 << 20, maxLoopIterations: Int = 1_000_000, maxCallDepth: Int = 32,
        maxRangeLength: Int = 100_000, maxInspectedNodes: Int = 10_000_000
    ) {
        self.maxOutputBytes = maxOutputBytes
        self.maxLoopIterations = maxLoopIterations
        self.maxCallDepth = maxCallDepth
        self.maxRangeLength = maxRangeLength
        self.maxInspectedNodes = maxInspectedNodes
    }
}
