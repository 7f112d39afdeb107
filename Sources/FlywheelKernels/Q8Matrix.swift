/// How a `Q8Matrix` lays its rows out in memory.
public enum Q8Layout: String, Sendable {
    /// Rows one after another, each `columns / 32` Q8_0 blocks of 34 bytes: the GGUF layout.
    case rows
    /// Rows in groups of four (`rows` a multiple of 4): group g holds, for each block j in turn, the four rows'
    /// f16 scales (8 bytes) and then their 32 quants each (128 bytes), 136 bytes per block. A thread working
    /// through a range of rows then reads one sequential stream instead of four interleaved ones, which the
    /// memory prefetchers follow better (the AVX2 kernels' layout; see `Q8Matrix.preferredLayout`).
    case rowGroups
}

/// A read-only Q8_0 matrix: `rows` rows of `columns` elements, each row `columns / 32` blocks, laid out
/// as `layout` says. In ggml terms a tensor of shape `[columns, rows]`.
///
/// The memory belongs to someone else (a mapped GGUF file or a buffer the model owns) and must
/// outlive every use of this view; it is never written, so sharing it across threads is safe.
public struct Q8Matrix: @unchecked Sendable {
    public let base: UnsafeRawPointer
    public let rows: Int
    public let columns: Int
    public let layout: Q8Layout

    /// Rows per group in the `.rowGroups` layout.
    public static let groupRows = 4
    /// Bytes per block of four rows in the `.rowGroups` layout.
    public static let groupBlockBytes = 4 * Q8Block.byteCount

    public init(base: UnsafeRawPointer, rows: Int, columns: Int, layout: Q8Layout = .rows) {
        precondition(columns % Q8Block.count == 0, "Q8_0 rows are whole blocks of 32")
        precondition(layout == .rows || rows % Self.groupRows == 0, "row groups hold whole groups of 4 rows")
        self.base = base
        self.rows = rows
        self.columns = columns
        self.layout = layout
    }

    /// Bytes per row (in either layout a row takes this many bytes; only `.rows` keeps them together).
    @inlinable public var rowStride: Int { Q8Block.rowByteCount(columns) }

    /// Bytes of the whole matrix.
    @inlinable public var byteCount: Int { rows * rowStride }

    /// The first byte of row `row` (the `.rows` layout only).
    @inlinable public func row(_ row: Int) -> UnsafeRawPointer {
        precondition(layout == .rows, "a row of a matrix in row groups is not contiguous")
        return base + row * rowStride
    }

    /// The layout the active kernels read fastest: `.rowGroups` for the AVX2 path (a measured gain on the
    /// Zen 3, where decode waits on memory), `.rows` for the others. Only matrices whose rows are a multiple of 4
    /// can be grouped.
    public static var preferredLayout: Q8Layout { KernelPath.active == .avx2 ? .rowGroups : .rows }

    /// Where row `row`'s block 0 keeps its scale and its quants, and the bytes from one block of the row to the
    /// next, in either layout.
    @inlinable public func blocks(ofRow row: Int) -> (scale: UnsafeRawPointer, quants: UnsafeRawPointer, step: Int) {
        switch layout {
        case .rows:
            let start = base + row * rowStride
            return (start, start + 2, Q8Block.byteCount)
        case .rowGroups:
            let group = base + (row / Self.groupRows) * (columns / Q8Block.count) * Self.groupBlockBytes
            let i = row % Self.groupRows
            return (group + 2 * i, group + 8 + 32 * i, Self.groupBlockBytes)
        }
    }

    /// Row `row` as floats (`columns` of them) into `out`, in either layout.
    public func dequantizeRow(_ row: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(row >= 0 && row < rows, "row in range")
        let (scale, quants, step) = blocks(ofRow: row)
        for j in 0 ..< columns / Q8Block.count {
            let d = Float(Float16(bitPattern: (scale + j * step).loadUnaligned(as: UInt16.self)))
            let q = (quants + j * step).assumingMemoryBound(to: Int8.self)
            for k in 0 ..< Q8Block.count { out[j * Q8Block.count + k] = d * Float(q[k]) }
        }
    }


    /// Writes this matrix (in `.rows` layout) into `destination` (`byteCount` bytes) in the `.rowGroups` layout
    /// and returns the view of it. `rows` must be a multiple of 4.
    public func regrouped(into destination: UnsafeMutableRawPointer) -> Q8Matrix {
        precondition(layout == .rows && rows % Self.groupRows == 0, "regrouping whole groups of a row-major matrix")
        let blocks = columns / Q8Block.count
        let stride = rowStride
        for group in 0 ..< rows / Self.groupRows {
            let first = base + group * Self.groupRows * stride
            let target = destination + group * blocks * Self.groupBlockBytes
            for j in 0 ..< blocks {
                let block = target + j * Self.groupBlockBytes
                for i in 0 ..< Self.groupRows {
                    let source = first + i * stride + j * Q8Block.byteCount
                    (block + 2 * i).copyMemory(from: source, byteCount: 2)
                    (block + 8 + 32 * i).copyMemory(from: source + 2, byteCount: 32)
                }
            }
        }
        return Q8Matrix(base: UnsafeRawPointer(destination), rows: rows, columns: columns, layout: .rowGroups)
    }
}
