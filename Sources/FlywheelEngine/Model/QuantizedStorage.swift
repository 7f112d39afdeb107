import FlywheelKernels

/// Heap memory holding Q8_0 rows that the model made itself (from weights of any other type, at load time).
///
/// Written only inside `init`, before the object is shared, and freed in `deinit`; in between it is
/// read-only, so sharing it across threads is safe. That is why it is `@unchecked Sendable`.
final class QuantizedStorage: @unchecked Sendable {
    let matrix: Q8Matrix
    private let memory: UnsafeMutableRawPointer

    /// Quantizes `rows` rows of `columns` floats, produced one row at a time by `fillRow(row, buffer)`.
    init(rows: Int, columns: Int, fillRow: (Int, UnsafeMutablePointer<Float>) -> Void) {
        let rowBytes = Q8Block.rowByteCount(columns)
        memory = UnsafeMutableRawPointer.allocate(byteCount: max(1, rows * rowBytes), alignment: 64)
        let row = UnsafeMutablePointer<Float>.allocate(capacity: columns)
        defer { row.deallocate() }
        for r in 0 ..< rows {
            fillRow(r, row)
            Q8Block.quantize(row, count: columns, into: memory + r * rowBytes)
        }
        matrix = Q8Matrix(base: UnsafeRawPointer(memory), rows: rows, columns: columns)
    }

    deinit { memory.deallocate() }
}
