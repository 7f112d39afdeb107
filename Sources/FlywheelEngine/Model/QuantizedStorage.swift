#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import FlywheelKernels

/// Heap memory holding a Q8_0 matrix that the model made itself at load time: requantized from weights of
/// any other type, or a Q8_0 matrix of the file copied into the layout the kernels read fastest.
///
/// Written only inside `init`, before the object is shared, and freed in `deinit`; in between it is
/// read-only, so sharing it across threads is safe. That is why it is `@unchecked Sendable`.
///
/// The memory comes from `allocate` (64-byte aligned, released with `free`); when it cannot be had the
/// initializers return nil, so a model too big for the machine is a clear error or keeps the file's layout
/// instead of aborting the process.
final class QuantizedStorage: @unchecked Sendable {
    /// Returns `bytes` bytes aligned to 64 that `free` releases, or nil.
    typealias Allocator = @Sendable (Int) -> UnsafeMutableRawPointer?

    /// `posix_memalign`.
    static let systemAllocator: Allocator = { bytes in
        var memory: UnsafeMutableRawPointer?
        return posix_memalign(&memory, 64, max(1, bytes)) == 0 ? memory : nil
    }

    let matrix: Q8Matrix
    private let memory: UnsafeMutableRawPointer

    /// Quantizes `rows` rows of `columns` floats, produced one row at a time by `fillRow(row, buffer)`, into
    /// `layout` (`.rowGroups` needs `rows` a multiple of 4).
    init?(rows: Int, columns: Int, layout: Q8Layout, allocate: Allocator = systemAllocator,
          fillRow: (Int, UnsafeMutablePointer<Float>) -> Void) {
        let rowBytes = Q8Block.rowByteCount(columns)
        guard let memory = allocate(rows * rowBytes) else { return nil }
        self.memory = memory
        let row = UnsafeMutablePointer<Float>.allocate(capacity: columns)
        defer { row.deallocate() }
        switch layout {
        case .rows:
            for r in 0 ..< rows {
                fillRow(r, row)
                Q8Block.quantize(row, count: columns, into: memory + r * rowBytes)
            }
            matrix = Q8Matrix(base: UnsafeRawPointer(memory), rows: rows, columns: columns)
        case .rowGroups:
            // Four rows at a time into a row-major scratch, then into their group (which takes the same bytes).
            let groupRows = Q8Matrix.groupRows
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: groupRows * rowBytes, alignment: 64)
            defer { scratch.deallocate() }
            for group in 0 ..< rows / groupRows {
                for i in 0 ..< groupRows {
                    fillRow(group * groupRows + i, row)
                    Q8Block.quantize(row, count: columns, into: scratch + i * rowBytes)
                }
                _ = Q8Matrix(base: UnsafeRawPointer(scratch), rows: groupRows, columns: columns)
                    .regrouped(into: memory + group * groupRows * rowBytes)
            }
            matrix = Q8Matrix(base: UnsafeRawPointer(memory), rows: rows, columns: columns, layout: .rowGroups)
        }
    }

    /// A copy of the row-major Q8_0 matrix `source` in `layout`.
    init?(copying source: Q8Matrix, layout: Q8Layout, allocate: Allocator = systemAllocator) {
        precondition(source.layout == .rows, "copies start from row-major matrices")
        guard let memory = allocate(source.byteCount) else { return nil }
        self.memory = memory
        switch layout {
        case .rows:
            memory.copyMemory(from: source.base, byteCount: source.byteCount)
            matrix = Q8Matrix(base: UnsafeRawPointer(memory), rows: source.rows, columns: source.columns)
        case .rowGroups:
            matrix = source.regrouped(into: memory)
        }
    }

    deinit { free(memory) }
}
