import FlywheelKernels
import FlywheelKernelsAVX2
import FlywheelKernelsAVX512
#if canImport(Glibc)
import Glibc
#endif

/// The benchmark driver; see main.swift for how to run it.
enum KernelBench {
    typealias MatVec = (Q8Matrix, UnsafeRawPointer, UnsafeMutablePointer<Float>, Range<Int>) -> Void
    typealias MatMul = (Q8Matrix, UnsafeRawPointer, Int, UnsafeMutablePointer<Float>, Int, Range<Int>) -> Void

    static func main(arguments: [String]) {
        let coldMiB = arguments.count > 1 ? Int(arguments[1]) ?? 1024 : 1024
        let quick = arguments.contains("quick")
        // `mul`: only the fast paths' matMul rates (hot matrix), for tuning the tiles.
        let mulOnly = arguments.contains("mul")
        // `decode`: matMul with the small batches of continuous batching's decode steps (B = 1...16) on the cold
        // matrix: weight GB/s and tokens per step-second, to see how the cost grows with the streams in a step.
        let decodeOnly = arguments.contains("decode")
        // `shapes`: matVec on the matrices of a Qwen2.5-0.5B-shaped model (enough copies of each to be cold), to
        // compare with the 2048-column cold matrix.
        let shapesOnly = arguments.contains("shapes")
        print("active path: \(Kernels.activePath); default threads: \(ComputePool.defaultThreadCount)")
        let pool1 = ComputePool(threadCount: 1)
        let pool2 = ComputePool(threadCount: 2)
        poolRoundTrip(pool2)

        var paths: [(String, MatVec, MatMul)] = [(
            "portable",
            { w, x, out, rows in PortableKernels.matVec(w, x, into: out, rows: rows) },
            { w, x, b, out, stride, rows in
                PortableKernels.matMul(w, x, batch: b, into: out, outStride: stride, rows: rows) }
        )]
        if Kernels.activePath != .portable {
            paths.append((
                "avx2",
                { w, x, out, rows in
                    AVX2Kernels.matVec(base: w.base, rowStride: w.rowStride, blocks: w.columns / 32, x: x,
                                       into: out, rows: rows) },
                { w, x, b, out, stride, rows in
                    AVX2Kernels.matMul(base: w.base, rowStride: w.rowStride, blocks: w.columns / 32, x: x,
                                       xStride: w.rowStride, batch: b, into: out, outStride: stride, rows: rows) }
            ))
        }
        if Kernels.activePath != .portable {
            // The AVX2 kernels on the same matrices in row groups (the layout the AVX2 path loads models in).
            paths.append((
                "avx2-grp",
                { w, x, out, rows in
                    AVX2Kernels.matVecGrouped(base: grouped(w).base, blocks: w.columns / 32, x: x, into: out, rows: rows) },
                { w, x, b, out, stride, rows in
                    AVX2Kernels.matMulGrouped(base: grouped(w).base, blocks: w.columns / 32, x: x, xStride: w.rowStride,
                                              batch: b, into: out, outStride: stride, rows: rows) }
            ))
        }
        if Kernels.activePath == .avx512vnni {
            paths.append((
                "avx512",
                { w, x, out, rows in
                    AVX512Kernels.matVec(base: w.base, rowStride: w.rowStride, blocks: w.columns / 32, x: x,
                                         into: out, rows: rows) },
                { w, x, b, out, stride, rows in
                    AVX512Kernels.matMul(base: w.base, rowStride: w.rowStride, blocks: w.columns / 32, x: x,
                                         xStride: w.rowStride, batch: b, into: out, outStride: stride, rows: rows) }
            ))
        }

        let hot = RandomMatrix(rows: 1536, columns: 576, seed: 1)
        let coldColumns = 2048
        let coldRows = coldMiB << 20 / Q8Block.rowByteCount(coldColumns)
        let cold = RandomMatrix(rows: coldRows, columns: coldColumns, seed: 2)
        let batch = 32, bigBatch = 64
        let xs = RandomMatrix(rows: bigBatch, columns: 2048, seed: 3)
        let out = UnsafeMutablePointer<Float>.allocate(capacity: bigBatch * max(coldRows, 1536))
        defer { out.deallocate() }

        crossCheck(hot, xs)
        for (threads, pool) in [(1, pool1), (2, pool2)] {
            let rate = measure(bytes: cold.bytes, minimumSeconds: 2) {
                pool.run { index, count in
                    let range = ComputePool.slice(cold.bytes / 64, index: index, count: count)
                    sink(readAll(cold.base + range.lowerBound * 64, lines: range.count))
                }
            }
            print("memory read ceiling \(threads)T: \(f(rate)) GB/s (\(coldMiB) MiB, 16-byte loads)")
        }
        if quick || mulOnly || decodeOnly || shapesOnly { paths.removeFirst() }
        if shapesOnly {
            // (rows, columns): attn_q/o, ffn_gate/up, ffn_down, the tied output (Qwen2.5-0.5B shape).
            // `shapes smol`: the SmolLM2-135M shapes instead (576 columns: q/o, k/v, gate/up, down, output).
            let shapes = arguments.contains("smol")
                ? [(576, 576), (192, 576), (1536, 576), (576, 1536), (49152, 576)]
                : [(896, 896), (4864, 896), (896, 4864), (151936, 896)]
            for (rows, columns) in shapes {
                let copies = max(1, (256 << 20) / (rows * Q8Block.rowByteCount(columns)))
                let matrix = RandomMatrix(rows: rows * copies, columns: columns, seed: 9)
                for (name, matVec, matMul) in paths {
                    var next = 0
                    let rate = measure(bytes: rows * Q8Block.rowByteCount(columns), minimumSeconds: 1) {
                        // One copy per call, in turn, so each call reads memory as decode does.
                        let first = next * rows
                        next = (next + 1) % copies
                        split(pool2, rows) { r in
                            matVec(matrix.matrix, xs.base, out, (first + r.lowerBound) ..< (first + r.upperBound))
                        }
                    }
                    // 8 tokens at once (a decode step of 8 streams), GB/s of weights.
                    let rate8 = measure(bytes: rows * Q8Block.rowByteCount(columns), minimumSeconds: 1) {
                        let first = next * rows
                        next = (next + 1) % copies
                        split(pool2, rows) { r in
                            matMul(matrix.matrix, xs.base, 8, out, rows * copies,
                                   (first + r.lowerBound) ..< (first + r.upperBound))
                        }
                    }
                    print(pad(name, 9) + "2T  \(rows)x\(columns) cold: matVec \(f(rate)) GB/s, matMul B=8 \(f(rate8)) GB/s")
                }
            }
            return
        }
        if decodeOnly {
            for (name, _, matMul) in paths {
                for (threads, pool) in [(2, pool2)] {
                    var line = pad(name, 9) + "\(threads)T  matMul on \(coldMiB) MiB cold, weight GB/s by B:"
                    for b in [1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 24, 32] {
                        let rate = measure(bytes: cold.bytes, minimumSeconds: 1) {
                            split(pool, cold.matrix.rows) { matMul(cold.matrix, xs.base, b, out, cold.matrix.rows, $0) }
                        }
                        line += " \(b):\(f(rate))"
                    }
                    print(line)
                }
            }
            return
        }
        if mulOnly {
            for (name, _, matMul) in paths {
                for (threads, pool) in [(1, pool1), (2, pool2)] {
                    let rates = [batch, bigBatch].map { b in
                        measure(bytes: hot.bytes * b, minimumSeconds: 1) {
                            split(pool, hot.matrix.rows) { matMul(hot.matrix, xs.base, b, out, hot.matrix.rows, $0) }
                        } * 1e9 / Double(hot.bytes) / 1000
                    }
                    print(pad(name, 9) + "\(threads)T  matMul k tokens/s on 1536x576: B=\(batch) \(f(rates[0]))  "
                          + "B=\(bigBatch) \(f(rates[1]))")
                }
            }
            return
        }
        for (name, matVec, matMul) in paths {
            for (threads, pool) in [(1, pool1), (2, pool2)] {
                let coldRate = measure(bytes: cold.bytes, minimumSeconds: 2) {
                    split(pool, cold.matrix.rows) { matVec(cold.matrix, xs.base, out, $0) }
                }
                let hotRate = measure(bytes: hot.bytes, minimumSeconds: 1) {
                    split(pool, hot.matrix.rows) { matVec(hot.matrix, xs.base, out, $0) }
                }
                if quick {
                    print(pad(name, 9) + "\(threads)T  matVec cold \(f(coldRate)) GB/s  hot \(f(hotRate)) GB/s")
                    continue
                }
                // matMul: B tokens through the hot matrix; "per token" GB/s = B * bytes / time.
                let mulRate = measure(bytes: hot.bytes * batch, minimumSeconds: 1) {
                    split(pool, hot.matrix.rows) { matMul(hot.matrix, xs.base, batch, out, hot.matrix.rows, $0) }
                }
                let bigRate = measure(bytes: hot.bytes * bigBatch, minimumSeconds: 1) {
                    split(pool, hot.matrix.rows) { matMul(hot.matrix, xs.base, bigBatch, out, hot.matrix.rows, $0) }
                }
                let loopRate = measure(bytes: hot.bytes * batch, minimumSeconds: 1) {
                    split(pool, hot.matrix.rows) { rows in
                        for b in 0 ..< batch {
                            matVec(hot.matrix, xs.base + b * hot.matrix.rowStride, out + b * hot.matrix.rows, rows)
                        }
                    }
                }
                print(pad(name, 9) + "\(threads)T  matVec cold \(f(coldRate)) GB/s  hot \(f(hotRate)) GB/s  | "
                      + "matMul B=\(batch) \(f(mulRate)) GB/s-per-token (\(f(mulRate / loopRate))x of \(batch) matVecs, "
                      + "\(f(mulRate * 1e9 / Double(hot.bytes) / 1000)) k tokens/s on 1536x576; "
                      + "B=\(bigBatch) \(f(bigRate * 1e9 / Double(hot.bytes) / 1000)) k tokens/s)")
            }
        }
        quantizeRate()
    }

    /// Sums `lines` 64-byte cache lines: the fastest a kernel could read memory.
    @inline(never)
    static func readAll(_ p: UnsafeRawPointer, lines: Int) -> SIMD4<UInt32> {
        var a = SIMD4<UInt32>(), b = a, c = a, d = a
        for i in 0 ..< lines {
            let line = p + i &* 64
            a &+= line.load(as: SIMD4<UInt32>.self)
            b &+= line.load(fromByteOffset: 16, as: SIMD4<UInt32>.self)
            c &+= line.load(fromByteOffset: 32, as: SIMD4<UInt32>.self)
            d &+= line.load(fromByteOffset: 48, as: SIMD4<UInt32>.self)
        }
        return a &+ b &+ c &+ d
    }

    @inline(never)
    static func sink(_ value: SIMD4<UInt32>) {
        if value == SIMD4(repeating: 0x1234_5678) { print("") }
    }

    /// Release-build sanity check: the AVX2 and portable matMul agree on the benchmark's data.
    static func crossCheck(_ w: RandomMatrix, _ xs: RandomMatrix) {
        guard Kernels.activePath != .portable else { return }
        let matrix = w.matrix, batch = 8
        // The activations' first `columns` elements per row serve as x (rows of xs are longer, so re-stride).
        let x = UnsafeMutableRawPointer.allocate(byteCount: batch * matrix.rowStride, alignment: 64)
        defer { x.deallocate() }
        for b in 0 ..< batch {
            (x + b * matrix.rowStride).copyMemory(from: xs.base + b * xs.matrix.rowStride, byteCount: matrix.rowStride)
            // Activations must stay within -127...127 (quantize guarantees it; random bytes do not).
            for j in 0 ..< matrix.columns / 32 {
                let q = (x + b * matrix.rowStride + j * 34 + 2).assumingMemoryBound(to: Int8.self)
                for i in 0 ..< 32 where q[i] == -128 { q[i] = -127 }
            }
        }
        let a = UnsafeMutablePointer<Float>.allocate(capacity: batch * matrix.rows)
        let p = UnsafeMutablePointer<Float>.allocate(capacity: batch * matrix.rows)
        defer { a.deallocate(); p.deallocate() }
        PortableKernels.matMul(matrix, x, batch: batch, into: p, outStride: matrix.rows, rows: 0 ..< matrix.rows)
        var checks: [(String, () -> Void)] = [("avx2", {
            AVX2Kernels.matMul(base: matrix.base, rowStride: matrix.rowStride, blocks: matrix.columns / 32, x: x,
                               xStride: matrix.rowStride, batch: batch, into: a, outStride: matrix.rows,
                               rows: 0 ..< matrix.rows)
        })]
        if Kernels.activePath == .avx512vnni {
            checks.append(("avx512", {
                AVX512Kernels.matMul(base: matrix.base, rowStride: matrix.rowStride, blocks: matrix.columns / 32,
                                     x: x, xStride: matrix.rowStride, batch: batch, into: a, outStride: matrix.rows,
                                     rows: 0 ..< matrix.rows)
            }))
        }
        for (name, run) in checks {
            run()
            var worst: Float = 0, scale: Float = 0
            for i in 0 ..< batch * matrix.rows {
                worst = max(worst, abs(a[i] - p[i]))
                scale = max(scale, abs(p[i]))
            }
            print("cross-check \(name) vs portable matMul: max |difference| \(worst) (largest output \(scale))")
        }
    }

    static func split(_ pool: ComputePool, _ rows: Int, _ body: (Range<Int>) -> Void) {
        pool.run { index, count in body(ComputePool.slice(rows, index: index, count: count, granularity: 4)) }
    }

    /// Bytes per second (in GB/s) of `body` repeated for at least `minimumSeconds`, best of 3 rounds.
    static func measure(bytes: Int, minimumSeconds: Double, _ body: () -> Void) -> Double {
        body()
        var best = 0.0
        for _ in 0 ..< 3 {
            let start = now()
            var iterations = 0
            repeat { body(); iterations += 1 } while now() - start < minimumSeconds / 3
            best = max(best, Double(bytes) * Double(iterations) / (now() - start) / 1e9)
        }
        return best
    }

    static func poolRoundTrip(_ pool: ComputePool) {
        let rounds = 200_000
        for _ in 0 ..< 1000 { pool.run { _, _ in } }
        var best = Double.infinity
        for _ in 0 ..< 5 {
            let start = now()
            for _ in 0 ..< rounds { pool.run { _, _ in } }
            best = min(best, (now() - start) / Double(rounds))
        }
        print("pool round trip (\(pool.threadCount) threads, empty body): \(f(best * 1e6, digits: 3)) µs")
        usleep(20_000)  // longer than the spin window: the worker parks
        let start = now()
        pool.run { _, _ in }
        print("pool round trip after the worker parked: \(f((now() - start) * 1e6, digits: 1)) µs")
    }

    static func quantizeRate() {
        let n = 2048 * 64
        let x = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { x.deallocate() }
        var state: UInt64 = 7
        for i in 0 ..< n { x[i] = Float(Int64(bitPattern: splitMix(&state)) >> 40) / Float(1 << 20) }
        let q = UnsafeMutableRawPointer.allocate(byteCount: Q8Block.rowByteCount(n), alignment: 64)
        defer { q.deallocate() }
        let portable = measure(bytes: n * 4, minimumSeconds: 0.5) { PortableKernels.quantize(x, count: n, into: q) }
        var line = "quantize: portable \(f(portable)) GB/s of floats"
        if Kernels.activePath != .portable {
            let avx2 = measure(bytes: n * 4, minimumSeconds: 0.5) { AVX2Kernels.quantize(x, count: n, into: q) }
            line += ", avx2 \(f(avx2)) GB/s"
        }
        print(line)
    }

    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    static func f(_ value: Double, digits: Int = 2) -> String {
        var scaled = (value * pow(10, Double(digits))).rounded() / pow(10, Double(digits))
        if scaled == -0 { scaled = 0 }
        return "\(scaled)"
    }

    static func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }

    static func splitMix(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A Q8_0 matrix of random quants in -127...127 and random small scales, owned by the benchmark.
/// Row-group copies of the benchmark's matrices, made the first time a path asks for one (before timing starts:
/// `measure` runs its body once untimed).
nonisolated(unsafe) private var groupedCopies: [UnsafeRawPointer: Q8Matrix] = [:]

/// `matrix` in the row-group layout (a copy, kept for the run).
func grouped(_ matrix: Q8Matrix) -> Q8Matrix {
    if let copy = groupedCopies[matrix.base] { return copy }
    let rows = matrix.rows & ~3
    let memory = UnsafeMutableRawPointer.allocate(byteCount: max(1, rows * matrix.rowStride), alignment: 64)
    let copy = Q8Matrix(base: matrix.base, rows: rows, columns: matrix.columns).regrouped(into: memory)
    groupedCopies[matrix.base] = copy
    return copy
}

final class RandomMatrix {
    let base: UnsafeMutableRawPointer
    let matrix: Q8Matrix
    let bytes: Int

    init(rows: Int, columns: Int, seed: UInt64) {
        bytes = rows * Q8Block.rowByteCount(columns)
        base = .allocate(byteCount: bytes, alignment: 64)
        // Random bytes everywhere (weights may hold any Int8), then a small normal scale per block:
        // random f16 bit patterns would include subnormals, which slow the FMAs down.
        var state = seed
        let words = base.bindMemory(to: UInt64.self, capacity: bytes / 8)
        for i in 0 ..< bytes / 8 { words[i] = KernelBench.splitMix(&state) }
        var offset = 0
        while offset < bytes {
            let scale = Float16(Float(KernelBench.splitMix(&state) % 1000 + 1) * 1e-5)
            base.storeBytes(of: scale.bitPattern, toByteOffset: offset, as: UInt16.self)
            offset += Q8Block.byteCount
        }
        matrix = Q8Matrix(base: base, rows: rows, columns: columns)
    }

    deinit { base.deallocate() }
}
