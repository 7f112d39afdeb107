import FlywheelKernels

/// Continuous batching: evaluates the new tokens of several sequences of one model in shared forward passes,
/// so each weight is read once per pass for all of them. A decode step of eight streams is one pass of eight
/// rows instead of eight passes of one; prompt chunks and decode tokens can share a pass.
///
/// A row's results do not depend on the rows it shares a pass with (see `ForwardPass`): evaluating through a
/// batch gives every sequence the same logits, bit for bit, as evaluating it alone.
///
/// Not thread-safe: one thread at a time (it spreads each pass over `pool`, which must have no other caller
/// during the call).
public final class InferenceBatch {
    public let model: LlamaModel
    /// The most rows (tokens) one forward pass takes; more are split over several passes.
    public var rowCapacity: Int { pass.rowCapacity }
    /// The longest sequence (positions) this batch can evaluate.
    public var maxPositions: Int { pass.maxPositions }

    private let pass: ForwardPass
    private let vocabularySize: Int
    /// Logits of the rows that end an entry in the current pass (rowCapacity, vocab).
    private let logits: UnsafeMutablePointer<Float>
    private var segments: [ForwardPass.Segment] = []
    private var segmentContexts: [InferenceContext] = []
    private var finishing: [Int] = []
    private var finishingLogitRow: [Int] = []

    /// Scratch for `rowCapacity` rows and sequences of up to `maxPositions` (at most the model's context).
    public init(model: LlamaModel, pool: ComputePool, rowCapacity: Int = 64, maxPositions: Int) {
        let maxPositions = max(1, min(maxPositions, model.config.contextLength))
        self.model = model
        self.pass = ForwardPass(
            model: model, pool: pool, rowCapacity: max(1, rowCapacity), maxPositions: maxPositions, attentionTile: 8,
            attentionChunk: 64)
        self.vocabularySize = model.config.vocabularySize
        self.logits = .allocate(capacity: pass.rowCapacity * vocabularySize)
    }

    deinit { logits.deallocate() }

    /// Appends each entry's tokens to its context, all entries sharing forward passes of at most `rowCapacity`
    /// rows (filled in entry order), and leaves in each context the logits of its last new token (read them with
    /// `InferenceContext.withLogits`). Throws `InferenceError` and changes nothing when any entry cannot be
    /// appended (see `InferenceContext.evaluate`), or `notBatchable` for a context of another model, one longer
    /// than `maxPositions`, or one listed twice.
    public func evaluate(_ entries: [(context: InferenceContext, tokens: ArraySlice<Int32>)]) throws {
        var seen = Set<ObjectIdentifier>()
        for (context, tokens) in entries {
            guard context.model === model else { throw InferenceError.notBatchable("a sequence of another model") }
            guard context.capacity <= maxPositions else {
                throw InferenceError.notBatchable("a sequence of \(context.capacity) positions; this batch takes \(maxPositions)")
            }
            guard seen.insert(ObjectIdentifier(context)).inserted else {
                throw InferenceError.notBatchable("the same sequence twice")
            }
            try context.check(tokens)
        }
        for (context, tokens) in entries { context.makeRoom(for: tokens.count) }
        var entry = 0
        var offset = 0
        while entry < entries.count {
            var rows = 0
            segments.removeAll(keepingCapacity: true)
            segmentContexts.removeAll(keepingCapacity: true)
            finishing.removeAll(keepingCapacity: true)
            finishingLogitRow.removeAll(keepingCapacity: true)
            while entry < entries.count, rows < rowCapacity {
                let (context, tokens) = entries[entry]
                let take = min(tokens.count - offset, rowCapacity - rows)
                var index = tokens.index(tokens.startIndex, offsetBy: offset)
                for row in rows ..< rows + take {
                    pass.embed(tokens[index], row: row)
                    tokens.formIndex(after: &index)
                }
                segments.append(ForwardPass.Segment(cache: context.cache, start: context.position, rows: rows ..< rows + take))
                segmentContexts.append(context)
                rows += take
                if offset + take == tokens.count {
                    finishingLogitRow.append(segments.count - 1)
                    finishing.append(rows - 1)
                    entry += 1
                    offset = 0
                } else {
                    offset += take
                }
            }
            pass.run(segments, rows: rows)
            pass.computeLogits(rows: finishing, into: logits)
            var next = 0
            for (index, segment) in segments.enumerated() {
                var row: UnsafePointer<Float>?
                if next < finishingLogitRow.count, finishingLogitRow[next] == index {
                    row = UnsafePointer(logits + next * vocabularySize)
                    next += 1
                }
                segmentContexts[index].advance(by: segment.rows.count, logits: row)
            }
        }
        segmentContexts.removeAll(keepingCapacity: true)
    }
}
