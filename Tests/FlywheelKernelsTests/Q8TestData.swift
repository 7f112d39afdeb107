import FlywheelKernels

/// Deterministic random numbers for the kernel tests (SplitMix64).
struct TestRandom {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func int(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }

    mutating func float(in range: ClosedRange<Float>) -> Float {
        range.lowerBound + (range.upperBound - range.lowerBound) * Float(next() >> 40) / Float(1 << 24)
    }
}

/// Q8_0 rows built block by block in a byte array, for feeding the kernels known quants and scales.
struct Q8TestRows {
    let rows: Int
    let blocks: Int
    var bytes: [UInt8]

    init(rows: Int, blocks: Int) {
        self.rows = rows
        self.blocks = blocks
        bytes = [UInt8](repeating: 0, count: rows * blocks * Q8Block.byteCount)
    }

    /// Random quants in `quants` and random scales in ±`scale` (or exactly 1 when `scale` is nil).
    static func random(
        rows: Int, blocks: Int, quants: ClosedRange<Int> = -127 ... 127, scale: Float? = 0.05,
        _ random: inout TestRandom
    ) -> Q8TestRows {
        var result = Q8TestRows(rows: rows, blocks: blocks)
        for r in 0 ..< rows {
            for j in 0 ..< blocks {
                let d = scale.map { random.float(in: -$0 ... $0) } ?? 1
                result.set(row: r, block: j, scale: d, quants: (0 ..< 32).map { _ in Int8(random.int(in: quants)) })
            }
        }
        return result
    }

    var columns: Int { blocks * Q8Block.count }
    var rowStride: Int { blocks * Q8Block.byteCount }

    mutating func set(row: Int, block: Int, scale: Float, quants: [Int8]) {
        let offset = (row * blocks + block) * Q8Block.byteCount
        let bits = Float16(scale).bitPattern
        bytes[offset] = UInt8(bits & 0xFF)
        bytes[offset + 1] = UInt8(bits >> 8)
        for i in 0 ..< 32 { bytes[offset + 2 + i] = UInt8(bitPattern: quants[i]) }
    }

    func scale(row: Int, block: Int) -> Float {
        let offset = (row * blocks + block) * Q8Block.byteCount
        return Float(Float16(bitPattern: UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8))
    }

    func quant(row: Int, block: Int, _ i: Int) -> Int {
        Int(Int8(bitPattern: bytes[(row * blocks + block) * Q8Block.byteCount + 2 + i]))
    }

    /// The plain-loop reference: the exact integer sum of each block pair.
    func blockSum(row: Int, _ other: Q8TestRows, row otherRow: Int, block: Int) -> Int {
        (0 ..< 32).reduce(0) { $0 + quant(row: row, block: block, $1) * other.quant(row: otherRow, block: block, $1) }
    }

    /// The reference dot product in Double, and the sum of its terms' magnitudes (the scale an
    /// accumulated float rounding error is relative to).
    func referenceDot(row: Int, _ other: Q8TestRows, row otherRow: Int) -> (value: Double, magnitude: Double) {
        var value = 0.0, magnitude = 0.0
        for j in 0 ..< blocks {
            let term = Double(scale(row: row, block: j)) * Double(other.scale(row: otherRow, block: j))
                * Double(blockSum(row: row, other, row: otherRow, block: j))
            value += term
            magnitude += abs(term)
        }
        return (value, magnitude)
    }

    /// `Σ |d_a·d_b| · Σ |a_i·b_i|` over the blocks: a bound on the magnitude of any partial sum a
    /// kernel may round (lane sums can be far larger than a block's total when terms cancel).
    func absoluteDot(row: Int, _ other: Q8TestRows, row otherRow: Int) -> Double {
        (0 ..< blocks).reduce(0.0) { total, j in
            let products = (0 ..< 32).reduce(0) {
                $0 + abs(quant(row: row, block: j, $1) * other.quant(row: otherRow, block: j, $1))
            }
            return total + abs(Double(scale(row: row, block: j)) * Double(other.scale(row: otherRow, block: j)))
                * Double(products)
        }
    }

    func withMatrix<T>(_ body: (Q8Matrix, UnsafeRawPointer) -> T) -> T {
        bytes.withUnsafeBytes { raw in body(Q8Matrix(base: raw.baseAddress!, rows: rows, columns: columns), raw.baseAddress!) }
    }
}
