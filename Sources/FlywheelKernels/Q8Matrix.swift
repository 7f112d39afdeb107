/// A read-only Q8_0 matrix: `rows` rows of `columns` elements, each row `columns / 32` blocks,
/// rows contiguous. In ggml terms a tensor of shape `[columns, rows]`.
///
/// The memory belongs to someone else (a mapped GGUF file or a buffer the model owns) and must
/// outlive every use of this view; it is never written, so sharing it across threads is safe.
public struct Q8Matrix: @unchecked Sendable {
    public let base: UnsafeRawPointer
    public let rows: Int
    public let columns: Int

    public init(base: UnsafeRawPointer, rows: Int, columns: Int) {
        precondition(columns % Q8Block.count == 0, "Q8_0 rows are whole blocks of 32")
        self.base = base
        self.rows = rows
        self.columns = columns
    }

    /// Bytes per row.
    @inlinable public var rowStride: Int { Q8Block.rowByteCount(columns) }

    /// The first byte of row `row`.
    @inlinable public func row(_ row: Int) -> UnsafeRawPointer { base + row * rowStride }
}
