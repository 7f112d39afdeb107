/// Bytes accepted for sending but not yet taken by the kernel: one contiguous array plus a read offset,
/// compacted lazily. Not thread-safe: owned by one connection on its loop.
struct OutputBuffer {
    private var bytes: [UInt8] = []
    private var start = 0

    var isEmpty: Bool { start == bytes.count }
    var count: Int { bytes.count - start }

    mutating func append(_ more: [UInt8]) {
        bytes.append(contentsOf: more)
    }

    mutating func append(_ more: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: more)
    }

    mutating func consume(_ byteCount: Int) {
        start += byteCount
        if start == bytes.count {
            bytes.removeAll(keepingCapacity: bytes.capacity <= 1 << 20)
            start = 0
        } else if start >= 1 << 16 && start * 2 >= bytes.count {
            bytes.removeSubrange(0..<start)
            start = 0
        }
    }

    mutating func removeAll() {
        bytes = []
        start = 0
    }

    /// The unsent bytes, for one `send`.
    func withUnsentBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try bytes.withUnsafeBytes { all in try body(UnsafeRawBufferPointer(rebasing: all[start...])) }
    }
}
