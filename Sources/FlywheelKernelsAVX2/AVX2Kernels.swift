#if arch(x86_64)
internal import _Builtin_intrinsics.intel
internal import CFlywheelKernels

/// Q8_0 kernels for x86-64 CPUs with AVX2, FMA and F16C. Per block, `vpsignb` moves the weight's
/// sign onto the activation so `vpmaddubsw` can multiply unsigned by signed bytes, `vpmaddwd`
/// widens the pair sums to 32 bits, and one `vfmadd` applies the product of the two f16 scales.
/// Products of 8 tokens at once (`matMul`'s `tile1x8`) use 16-bit operands instead, with the same
/// 32-bit lane sums, so every kernel gives the same bits for a row.
///
/// This module is compiled for Haswell-class CPUs: calling anything here on a CPU without AVX2,
/// FMA and F16C is an illegal instruction. `FlywheelKernels` checks the CPU once and only then
/// calls in; nothing else should import this module. Functions are `@inline(never)` so no AVX2
/// code is ever inlined into a caller compiled for baseline x86-64.
///
/// Operand contract: the first operand (weights) may hold any `Int8`, including -128; the second
/// (activations) must stay within -127...127, which `quantize` guarantees. (`vpsignb` negates the
/// activation where the weight is negative, and -(-128) does not fit a byte.)
public enum AVX2Kernels {
    static let blockBytes = 34

    /// Dot product of two Q8_0 rows of `blocks` blocks.
    @inline(never)
    public static func dot(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, blocks: Int) -> Float {
        var acc = _mm256_setzero_ps()
        for j in 0 ..< blocks {
            let pa = a + j &* blockBytes
            let pb = b + j &* blockBytes
            let scale = _mm256_broadcastss_ps(_mm_mul_ss(halfScale(pa), halfScale(pb)))
            acc = _mm256_fmadd_ps(scale, blockProduct(quants(pa), quants(pb)), acc)
        }
        return horizontalSum(acc)
    }

    /// `out[r] = W[r] · x` for `r` in `rows`, where row `r` of W starts at `base + r * rowStride`
    /// and has `blocks` blocks, and `x` is one quantized row of `blocks` blocks.
    ///
    /// Four weight rows per pass share each activation block load; the next four rows are prefetched a group ahead.
    @inline(never)
    public static func matVec(
        base: UnsafeRawPointer, rowStride: Int, blocks: Int, x: UnsafeRawPointer,
        into out: UnsafeMutablePointer<Float>, rows: Range<Int>
    ) {
        // Prefetch the next group of four rows at this offset: a whole group (4 rows) ahead of the loads. A
        // fixed 512 bytes ahead in the same row kept too few lines in flight, and rows of 952 bytes (a 896-wide
        // model) ended before it helped: 26 -> 53 GB/s on 896x896, 35 -> 88 on 2048-column rows (kernel-bench, 2T).
        let ahead = rowStride &* 4
        var r = rows.lowerBound
        while r &+ 4 <= rows.upperBound {
            let w0 = base + r &* rowStride
            let w1 = w0 + rowStride
            let w2 = w1 + rowStride
            let w3 = w2 + rowStride
            var acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0
            for j in 0 ..< blocks {
                let offset = j &* blockBytes
                let px = x + offset
                let xq = quants(px)
                let dx = halfScale(px)
                let target = offset &+ ahead
                fw_prefetch(w0 + target)
                fw_prefetch(w1 + target)
                fw_prefetch(w2 + target)
                fw_prefetch(w3 + target)
                acc0 = accumulate(acc0, w0 + offset, xq, dx)
                acc1 = accumulate(acc1, w1 + offset, xq, dx)
                acc2 = accumulate(acc2, w2 + offset, xq, dx)
                acc3 = accumulate(acc3, w3 + offset, xq, dx)
            }
            storeSums(acc0, acc1, acc2, acc3, to: out + r)
            r &+= 4
        }
        while r < rows.upperBound {
            out[r] = dot(base + r &* rowStride, x, blocks: blocks)
            r &+= 1
        }
    }

    // MARK: Row groups

    /// Bytes per block in the row-group layout: the four rows' f16 scales (8 bytes), then each row's 32 quants.
    public static let groupBlockBytes = 136
    /// How far ahead in a group's bytes the grouped kernels prefetch: 1 KiB kept 2 threads at 23-25 GB/s on a
    /// Zen 3 (kernel-bench shapes), against 16-21 with only the hardware prefetcher.
    static let groupPrefetchDistance = 1024

    /// `matVec` for a matrix in the row-group layout: rows in groups of four, group g at
    /// `base + g * blocks * 136`, holding per block j the four rows' scales (8 bytes) and then their quants
    /// (4 x 32 bytes). A thread's rows are then one sequential stream instead of four, which the prefetchers
    /// keep ahead of: 13-19 -> 23-25 GB/s on the matrices of small models (rows of 576 to 1,536 columns) on a
    /// Zen 3. Each output is summed in the same order as `matVec`, so results are bit-identical to it.
    @inline(never)
    public static func matVecGrouped(
        base: UnsafeRawPointer, blocks: Int, x: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>,
        rows: Range<Int>
    ) {
        let groupStride = blocks &* groupBlockBytes
        var r = rows.lowerBound
        while r < rows.upperBound && r & 3 != 0 {
            out[r] = groupedDot(base, blocks, r, x)
            r &+= 1
        }
        while r &+ 4 <= rows.upperBound {
            var p = base + (r >> 2) &* groupStride
            var acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0
            for j in 0 ..< blocks {
                let px = x + j &* blockBytes
                let xq = quants(px)
                fw_prefetch(p + groupPrefetchDistance)
                fw_prefetch(p + (groupPrefetchDistance &+ 64))
                // The four weight scales (`halfScale` converts all four halves it loads) times the activation's:
                // dw * dx per row, as `accumulate` forms it.
                let d = _mm_mul_ps(halfScale(p), _mm_broadcastss_ps(halfScale(px)))
                acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d[0]), blockProduct(groupQuants(p, 0), xq), acc0)
                acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d[1]), blockProduct(groupQuants(p, 1), xq), acc1)
                acc2 = _mm256_fmadd_ps(_mm256_set1_ps(d[2]), blockProduct(groupQuants(p, 2), xq), acc2)
                acc3 = _mm256_fmadd_ps(_mm256_set1_ps(d[3]), blockProduct(groupQuants(p, 3), xq), acc3)
                p += groupBlockBytes
            }
            storeSums(acc0, acc1, acc2, acc3, to: out + r)
            r &+= 4
        }
        while r < rows.upperBound {
            out[r] = groupedDot(base, blocks, r, x)
            r &+= 1
        }
    }

    /// `matMul` for a matrix in the row-group layout (see `matVecGrouped`); bit-identical to `matMul`.
    @inline(never)
    public static func matMulGrouped(
        base: UnsafeRawPointer, blocks: Int, x: UnsafeRawPointer, xStride: Int, batch: Int,
        into out: UnsafeMutablePointer<Float>, outStride: Int, rows: Range<Int>
    ) {
        matMul(base, rowStride: 0, grouped: true, blocks: blocks, x: x, xStride: xStride, batch: batch, into: out,
               outStride: outStride, rows: rows)
    }

    /// The quants of row `i` (0...3) of a row-group block.
    @inline(__always)
    static func groupQuants(_ p: UnsafeRawPointer, _ i: Int) -> __m256i {
        (p + (8 &+ i &* 32)).loadUnaligned(as: __m256i.self)
    }

    /// Where row `r`'s scales and quants start (block 0).
    @inline(__always)
    static func weightRow(
        _ base: UnsafeRawPointer, rowStride: Int, grouped: Bool, blocks: Int, _ r: Int
    ) -> (scale: UnsafeRawPointer, quants: UnsafeRawPointer) {
        if grouped {
            let group = base + (r >> 2) &* (blocks &* groupBlockBytes)
            let i = r & 3
            return (group + i &* 2, group + (8 &+ i &* 32))
        }
        let w = base + r &* rowStride
        return (w, w + 2)
    }

    /// One weight row (scales at `s`, quants at `q`, blocks `step` bytes apart) times a quantized activation row,
    /// in the order `dot` sums.
    @inline(__always)
    static func rowDot(
        _ s: UnsafeRawPointer, _ q: UnsafeRawPointer, step: Int, _ x: UnsafeRawPointer, blocks: Int
    ) -> Float {
        var acc = _mm256_setzero_ps()
        for j in 0 ..< blocks {
            let o = j &* step
            let px = x + j &* blockBytes
            let scale = _mm256_broadcastss_ps(_mm_mul_ss(halfScale(s + o), halfScale(px)))
            acc = _mm256_fmadd_ps(scale, blockProduct((q + o).loadUnaligned(as: __m256i.self), quants(px)), acc)
        }
        return horizontalSum(acc)
    }

    /// Row `r` of a row-group matrix times `x`.
    @inline(__always)
    static func groupedDot(_ base: UnsafeRawPointer, _ blocks: Int, _ r: Int, _ x: UnsafeRawPointer) -> Float {
        let row = weightRow(base, rowStride: 0, grouped: true, blocks: blocks, r)
        return rowDot(row.scale, row.quants, step: groupBlockBytes, x, blocks: blocks)
    }

    // MARK: Products of several tokens

    /// `out[b * outStride + r] = W[r] · x[b]` for `r` in `rows` and `b` in `0 ..< batch`, where
    /// activation row `b` starts at `x + b * xStride`.
    ///
    /// Every whole 8 tokens take `tile1x8`: one weight row by 8 tokens in 16-bit products, the fastest
    /// form without VNNI (see there). The rest take byte tiles: 2 weight rows by 4 tokens keep 8
    /// accumulators in registers, each weight block loaded and made absolute once for four tokens; the
    /// last batch % 4 tokens take 2 x 2 and 2 x 1 tiles on the same two rows while they are in L1, so a
    /// batch of 2, 3 or 7 (continuous batching's decode steps) still streams the weights from memory
    /// once. The activation scales are converted to floats once per call rather than once per pair.
    /// Every output is summed in the same order as `matVec` and `dot`, so results are bit-identical.
    @inline(never)
    public static func matMul(
        base: UnsafeRawPointer, rowStride: Int, blocks: Int, x: UnsafeRawPointer, xStride: Int, batch: Int,
        into out: UnsafeMutablePointer<Float>, outStride: Int, rows: Range<Int>
    ) {
        matMul(base, rowStride: rowStride, grouped: false, blocks: blocks, x: x, xStride: xStride, batch: batch,
               into: out, outStride: outStride, rows: rows)
    }

    /// Both layouts' matMul: rows one after another (`rowStride` apart) or in groups of four (`grouped`). Inlined
    /// into each entry point with `grouped` a constant, so each layout's tiles are compiled with its offsets as
    /// constants where it has them (no closure here: a closure kept `grouped` a variable, and the tiles, short of
    /// registers, kept accumulators on the stack: 8 streams decoded 30% slower).
    ///
    /// Tokens go in spans of up to `spanTokens` (the last span takes what is left, up to 23). In a span, each
    /// whole 8 tokens take `tile1x8`, whose activations are widened to 16 bits once per call; the last 0 to 7
    /// take the byte tiles (2x4, 2x2, 2x1) on the same two rows while they are in L1. A span's widened
    /// activations (16 tokens x 64 bytes per block: 155 KiB for 4,864 columns) stay in L2 while every row
    /// passes over them; the weights are read once per span, which costs nothing where 16 tokens make the
    /// product compute-bound.
    @inline(__always)
    static func matMul(
        _ base: UnsafeRawPointer, rowStride: Int, grouped: Bool, blocks: Int, x: UnsafeRawPointer, xStride: Int,
        batch: Int, into out: UnsafeMutablePointer<Float>, outStride: Int, rows: Range<Int>
    ) {
        guard batch > 0, !rows.isEmpty else { return }
        let step = grouped ? groupBlockBytes : blockBytes
        let spanCapacity = min(batch, spanTokens &+ 7)
        // xScales[j * count + t]: the scale of the span's token t in block j, so a tile reads 4 or 8 at once.
        let xScales = UnsafeMutablePointer<Float>.allocate(capacity: blocks &* spanCapacity)
        defer { xScales.deallocate() }
        // The span's whole 8s widened (see `widen`), then `tile1x8`'s table of scale products for one row.
        let wideBytes = (spanCapacity >> 3) &* blocks &* 512
        let wide = UnsafeMutableRawPointer.allocate(byteCount: max(64, wideBytes &+ blocks &* 32), alignment: 64)
        defer { wide.deallocate() }
        let table = (wide + wideBytes).assumingMemoryBound(to: Float.self)
        var start = 0
        while start < batch {
            let count = batch &- start <= spanTokens &+ 7 ? batch &- start : spanTokens
            let xs = x + start &* xStride
            for t in 0 ..< count {
                for j in 0 ..< blocks {
                    xScales[j &* count &+ t] = halfScale(xs + (t &* xStride &+ j &* blockBytes))[0]
                }
            }
            let chunks = count >> 3
            if chunks > 0 { widen(xs, xStride, tokens: chunks << 3, blocks: blocks, into: wide) }
            matMulSpan(
                base, rowStride: rowStride, grouped: grouped, step: step, blocks: blocks, xs, xStride, count,
                xScales, wide, table, out + start &* outStride, outStride, rows)
            start &+= count
        }
    }

    /// Tokens per span of `matMul` (see there).
    static let spanTokens = 16

    /// Every row of `rows` times the span's `count` tokens.
    @inline(__always)
    static func matMulSpan(
        _ base: UnsafeRawPointer, rowStride: Int, grouped: Bool, step: Int, blocks: Int, _ x: UnsafeRawPointer,
        _ xStride: Int, _ count: Int, _ xScales: UnsafeMutablePointer<Float>, _ wide: UnsafeRawPointer,
        _ table: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ outStride: Int, _ rows: Range<Int>
    ) {
        let byteTokens = count & ~3
        let tailTokens = count &- byteTokens
        // Long rows: the whole 8s first, over all rows (see `segmentedProducts`); the rest below takes the tokens
        // after them (reading the weights a second time only when there are such tokens).
        var chunks = count >> 3
        var first = 0
        if chunks > 0 && blocks > segmentThreshold {
            segmentedProducts(
                base, rowStride: rowStride, grouped: grouped, step: step, blocks: blocks, chunks: chunks, xScales,
                count, wide, table, out, outStride, rows)
            first = chunks << 3
            chunks = 0
            if first == count { return }
        }
        var r = rows.lowerBound
        // A pair of rows must sit in one group; a row alone takes every token by itself.
        if grouped && r & 1 != 0 {
            singleRow(base, rowStride: rowStride, grouped: grouped, blocks: blocks, r, x + first &* xStride, xStride,
                      count &- first, out + first &* outStride, outStride)
            r &+= 1
        }
        let tail = x + byteTokens &* xStride
        while r &+ 2 <= rows.upperBound {
            let row = weightRow(base, rowStride: rowStride, grouped: grouped, blocks: blocks, r)
            // The first tile of each row pair prefetches: rows one after another, the pair four rows ahead at the
            // same offset (as matVec does); in groups, the group's stream 1 KiB ahead, by the group's first pair.
            // The other tiles find the two rows in L1.
            var pair = RowPair(
                s0: row.scale, q0: row.quants, step: step, scaleDelta: grouped ? 2 : rowStride,
                quantDelta: grouped ? 32 : rowStride,
                prefetchFrom: grouped ? row.scale + blocks &* groupBlockBytes : row.scale + rowStride &* 4,
                prefetchDelta: grouped ? 64 : rowStride, prefetch: !grouped || r & 3 == 0)
            for c in 0 ..< chunks {
                let o = out + (c &* 8 &* outStride &+ r)
                let scales = xScales + c &* 8
                let w = wide + c &* blocks &* 512
                tile1x8(pair, second: false, blocks, w, scales, count, table, o, outStride)
                pair.prefetch = false
                tile1x8(pair, second: true, blocks, w, scales, count, table, o + 1, outStride)
            }
            var b = first + (chunks << 3)
            if b < byteTokens {
                tile2x4(pair, blocks, x + b &* xStride, xStride, xScales + b, count, table,
                        out + (b &* outStride &+ r), outStride)
                pair.prefetch = false
                b &+= 4
            }
            let o = out + (byteTokens &* outStride &+ r)
            let tailScales = xScales + byteTokens
            switch tailTokens {
            case 3:
                tile2x2(pair, blocks, tail, xStride, tailScales, count, o, outStride)
                pair.prefetch = false
                tile2x1(pair, blocks, tail + 2 &* xStride, tailScales + 2, count, o + 2 &* outStride)
            case 2:
                tile2x2(pair, blocks, tail, xStride, tailScales, count, o, outStride)
            case 1:
                tile2x1(pair, blocks, tail, tailScales, count, o)
            default:
                break
            }
            r &+= 2
        }
        if r < rows.upperBound {
            singleRow(base, rowStride: rowStride, grouped: grouped, blocks: blocks, r, x + first &* xStride, xStride,
                      count &- first, out + first &* outStride, outStride)
        }
    }

    /// Widens the quants of `tokens` (a multiple of 8) activation rows to 16 bits for `tile1x8`: for 8 tokens at a
    /// time, block j, token t, at `into + ((chunk * blocks + j) * 8 + t) * 64`, the block's even bytes (32 bytes),
    /// then its odd bytes, each sign-extended into a 16-bit lane.
    @inline(__always)
    static func widen(
        _ x: UnsafeRawPointer, _ xStride: Int, tokens: Int, blocks: Int, into: UnsafeMutableRawPointer
    ) {
        for t in 0 ..< tokens {
            let chunk = into + (t >> 3) &* blocks &* 512 + (t & 7) &* 64
            let row = x + t &* xStride
            for j in 0 ..< blocks {
                let q = quants(row + j &* blockBytes)
                let dst = chunk + j &* 512
                dst.storeBytes(of: _mm256_srai_epi16(_mm256_slli_epi16(q, 8), 8), as: __m256i.self)
                (dst + 32).storeBytes(of: _mm256_srai_epi16(q, 8), as: __m256i.self)
            }
        }
    }

    /// Row `r` times every token: what the tiles leave.
    @inline(never)
    static func singleRow(
        _ base: UnsafeRawPointer, rowStride: Int, grouped: Bool, blocks: Int, _ r: Int, _ x: UnsafeRawPointer,
        _ xStride: Int, _ batch: Int, _ out: UnsafeMutablePointer<Float>, _ outStride: Int
    ) {
        let row = weightRow(base, rowStride: rowStride, grouped: grouped, blocks: blocks, r)
        let step = grouped ? groupBlockBytes : blockBytes
        for b in 0 ..< batch {
            out[b &* outStride &+ r] = rowDot(row.scale, row.quants, step: step, x + b &* xStride, blocks: blocks)
        }
    }

    /// Two weight rows for a tile: row 0's scale and quants of block 0, where row 1's are (`scaleDelta`,
    /// `quantDelta` further), the step between blocks, and what to prefetch (at the same block offsets) while the
    /// tile runs.
    struct RowPair {
        let s0: UnsafeRawPointer, q0: UnsafeRawPointer
        let step: Int, scaleDelta: Int, quantDelta: Int
        let prefetchFrom: UnsafeRawPointer, prefetchDelta: Int
        var prefetch: Bool

        @inline(__always)
        func prefetch(at offset: Int) {
            fw_prefetch(prefetchFrom + offset)
            fw_prefetch(prefetchFrom + (offset &+ prefetchDelta))
        }

        @inline(__always) func quants0(_ o: Int) -> __m256i { (q0 + o).loadUnaligned(as: __m256i.self) }
        @inline(__always) func quants1(_ o: Int) -> __m256i { (q0 + (o &+ quantDelta)).loadUnaligned(as: __m256i.self) }
        @inline(__always) func scale0(_ o: Int) -> Float { halfScale(s0 + o)[0] }
        @inline(__always) func scale1(_ o: Int) -> Float { halfScale(s0 + (o &+ scaleDelta))[0] }
    }

    /// One weight row (row 0 or 1 of `w`) by 8 activation rows, widened by `widen` at `x`.
    ///
    /// 16-bit products instead of the byte tiles' `vpsignb` + `vpmaddubsw` + `vpmaddwd`: the weight block's even
    /// and odd bytes, sign-extended by shifts once for 8 tokens, times the token's (`vpmaddwd` twice, `vpaddd`).
    /// Lane k then holds bytes 4k...4k+3's products, the same integer `blockProduct` gives, so the sums are
    /// bit-identical to `matVec`'s. That is one multiply-pipe operation fewer per token and block, and the scale
    /// products come from a table filled first (`dx * dw`, `matVec`'s product) as broadcast loads, where
    /// extracting them from a register took two shuffles each. On a Zen 3 (`vpmaddubsw`, `vpmaddwd`, `vpsignb`
    /// and FMAs all share two pipes), `kernel-bench mul`: 35 -> 50 k tokens/s on one thread at B=32.
    @inline(__always)
    static func tile1x8(
        _ w: RowPair, second: Bool, _ blocks: Int, _ x: UnsafeRawPointer, _ xScales: UnsafePointer<Float>,
        _ xScaleStride: Int, _ table: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>,
        _ outStride: Int
    ) {
        let s = second ? w.s0 + w.scaleDelta : w.s0
        let q = second ? w.q0 + w.quantDelta : w.q0
        fillTable(table, s, step: w.step, blocks, xScales, xScaleStride)
        var a = Accumulators8()
        // The loop twice, with and without prefetches: a test inside it cost a spilled accumulator and eight
        // register moves per block.
        if w.prefetch {
            products1x8(q, step: w.step, blocks, x, table, prefetch: true, w.prefetchFrom, w.prefetchDelta, &a)
        } else {
            products1x8(q, step: w.step, blocks, x, table, prefetch: false, w.prefetchFrom, 0, &a)
        }
        a.storeSums(to: out, stride: outStride)
    }

    /// The 8 tokens' accumulators of a `tile1x8`.
    struct Accumulators8 {
        var a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps()
        var a4 = _mm256_setzero_ps(), a5 = _mm256_setzero_ps(), a6 = _mm256_setzero_ps(), a7 = _mm256_setzero_ps()

        init() {}

        @inline(__always)
        init(_ a0: __m256, _ a1: __m256, _ a2: __m256, _ a3: __m256, _ a4: __m256, _ a5: __m256, _ a6: __m256,
             _ a7: __m256) {
            (self.a0, self.a1, self.a2, self.a3, self.a4, self.a5, self.a6, self.a7) = (a0, a1, a2, a3, a4, a5, a6, a7)
        }

        @inline(__always)
        init(loading p: UnsafePointer<Float>) {
            // Unaligned loads: the accumulators live in a Float allocation, aligned to 16 bytes only.
            let r = UnsafeRawPointer(p)
            a0 = r.loadUnaligned(as: __m256.self); a1 = r.loadUnaligned(fromByteOffset: 32, as: __m256.self)
            a2 = r.loadUnaligned(fromByteOffset: 64, as: __m256.self)
            a3 = r.loadUnaligned(fromByteOffset: 96, as: __m256.self)
            a4 = r.loadUnaligned(fromByteOffset: 128, as: __m256.self)
            a5 = r.loadUnaligned(fromByteOffset: 160, as: __m256.self)
            a6 = r.loadUnaligned(fromByteOffset: 192, as: __m256.self)
            a7 = r.loadUnaligned(fromByteOffset: 224, as: __m256.self)
        }

        /// The 8 lane sums to `out[0]`, `out[stride]`, ... `out[7 * stride]`.
        @inline(__always)
        func storeSums(to out: UnsafeMutablePointer<Float>, stride: Int) {
            AVX2Kernels.storeSums(a0, a1, a2, a3, row: out, stride: stride)
            AVX2Kernels.storeSums(a4, a5, a6, a7, row: out + 4 &* stride, stride: stride)
        }

        @inline(__always)
        func store(to p: UnsafeMutablePointer<Float>) {
            let r = UnsafeMutableRawPointer(p)
            r.storeBytes(of: a0, as: __m256.self); r.storeBytes(of: a1, toByteOffset: 32, as: __m256.self)
            r.storeBytes(of: a2, toByteOffset: 64, as: __m256.self); r.storeBytes(of: a3, toByteOffset: 96, as: __m256.self)
            r.storeBytes(of: a4, toByteOffset: 128, as: __m256.self)
            r.storeBytes(of: a5, toByteOffset: 160, as: __m256.self)
            r.storeBytes(of: a6, toByteOffset: 192, as: __m256.self)
            r.storeBytes(of: a7, toByteOffset: 224, as: __m256.self)
        }
    }

    /// `table[j * 8 + t]` = token t's scale in block j times the weight row's (scales at `s`, `step` apart).
    @inline(__always)
    static func fillTable(
        _ table: UnsafeMutablePointer<Float>, _ s: UnsafeRawPointer, step: Int, _ blocks: Int,
        _ xScales: UnsafePointer<Float>, _ xScaleStride: Int
    ) {
        for j in 0 ..< blocks {
            let dw = halfScale(s + j &* step)[0]
            let dx = UnsafeRawPointer(xScales + j &* xScaleStride).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(table + j &* 8).storeBytes(of: dx * SIMD8(repeating: dw), as: SIMD8<Float>.self)
        }
    }

    /// The inner loop of the 16-bit tiles: one weight row's `blocks` blocks (quants at `q`, `step` apart) times 8
    /// widened tokens at `x`, added to `a`; with `prefetch`, the lines at `from` and `from + delta` (same offsets).
    @inline(__always)
    static func products1x8(
        _ q: UnsafeRawPointer, step: Int, _ blocks: Int, _ x: UnsafeRawPointer, _ table: UnsafeMutablePointer<Float>,
        prefetch: Bool, _ from: UnsafeRawPointer, _ delta: Int, _ a: inout Accumulators8
    ) {
        var a0 = a.a0, a1 = a.a1, a2 = a.a2, a3 = a.a3, a4 = a.a4, a5 = a.a5, a6 = a.a6, a7 = a.a7
        for j in 0 ..< blocks {
            let o = j &* step
            if prefetch {
                fw_prefetch(from + o)
                fw_prefetch(from + (o &+ delta))
            }
            let w = (q + o).loadUnaligned(as: __m256i.self)
            let even = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8), odd = _mm256_srai_epi16(w, 8)
            let px = x + j &* 512
            let d = UnsafePointer(table + j &* 8)
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(d), wideProduct(even, odd, px), a0)
            a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(d + 1), wideProduct(even, odd, px + 64), a1)
            a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(d + 2), wideProduct(even, odd, px + 128), a2)
            a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(d + 3), wideProduct(even, odd, px + 192), a3)
            a4 = _mm256_fmadd_ps(_mm256_broadcast_ss(d + 4), wideProduct(even, odd, px + 256), a4)
            a5 = _mm256_fmadd_ps(_mm256_broadcast_ss(d + 5), wideProduct(even, odd, px + 320), a5)
            a6 = _mm256_fmadd_ps(_mm256_broadcast_ss(d + 6), wideProduct(even, odd, px + 384), a6)
            a7 = _mm256_fmadd_ps(_mm256_broadcast_ss(d + 7), wideProduct(even, odd, px + 448), a7)
        }
        a = Accumulators8(a0, a1, a2, a3, a4, a5, a6, a7)
    }

    /// The 16-bit tiles for rows too long for a span's widened activations to stay in L1 (`segmentThreshold`):
    /// rows in blocks of `segmentRows`, and in each, columns in segments of `segmentBlocks` as the outer loop and
    /// the block's rows inside, each row's 8-token accumulators kept in `acc` between segments (at most 32 KiB, so
    /// they stay in cache however many rows the call has). Every accumulator sees its blocks in order, so the sums
    /// are the same bits; a segment's activations (8 KiB per 8 tokens) stay in L1 while the rows pass. Weights
    /// are still read once, a segment of each row (or group) at a time; the row (group) four rows on is
    /// prefetched at the same segment, and past the block's end its first rows at the next segment.
    @inline(__always)
    static func segmentedProducts(
        _ base: UnsafeRawPointer, rowStride: Int, grouped: Bool, step: Int, blocks: Int, chunks: Int,
        _ xScales: UnsafeMutablePointer<Float>, _ count: Int, _ wide: UnsafeRawPointer,
        _ table: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ outStride: Int, _ rows: Range<Int>
    ) {
        let perRow = chunks &* 64
        let capacity = min(rows.count, segmentRows) &* perRow
        let acc = UnsafeMutablePointer<Float>.allocate(capacity: capacity)
        defer { acc.deallocate() }
        var lo = rows.lowerBound
        while lo < rows.upperBound {
            let hi = min(rows.upperBound, lo &+ segmentRows)
            acc.update(repeating: 0, count: (hi &- lo) &* perRow)
            var first = 0
            while first < blocks {
                let n = min(segmentBlocks, blocks &- first)
                for r in lo ..< hi {
                    let row = weightRow(base, rowStride: rowStride, grouped: grouped, blocks: blocks, r)
                    let s = row.scale + first &* step, q = row.quants + first &* step
                    // In groups, the group's first row prefetches for the group (both lines of each block); rows
                    // one after another, each for one row.
                    let prefetch = !grouped || r & 3 == 0
                    let wraps = r &+ 4 >= hi && first &+ n < blocks
                    let next = wraps ? lo &+ (r &+ 4 &- hi) : r &+ 4
                    let from = weightRow(base, rowStride: rowStride, grouped: grouped, blocks: blocks, next).scale
                        + (wraps ? first &+ n : first) &* step
                    for c in 0 ..< chunks {
                        fillTable(table, s, step: step, n, xScales + (first &* count &+ c &* 8), count)
                        let cell = acc + ((r &- lo) &* perRow &+ c &* 64)
                        var a = Accumulators8(loading: cell)
                        let x = wide + (c &* blocks &+ first) &* 512
                        if prefetch && c == 0 {
                            products1x8(q, step: step, n, x, table, prefetch: true, from, grouped ? 64 : 0, &a)
                        } else {
                            products1x8(q, step: step, n, x, table, prefetch: false, from, 0, &a)
                        }
                        a.store(to: cell)
                    }
                }
                first &+= n
            }
            for r in lo ..< hi {
                for c in 0 ..< chunks {
                    Accumulators8(loading: acc + ((r &- lo) &* perRow &+ c &* 64))
                        .storeSums(to: out + (c &* 8 &* outStride &+ r), stride: outStride)
                }
            }
            lo = hi
        }
    }

    /// Rows per block in `segmentedProducts` (a multiple of 4, so blocks of rows keep to groups).
    static let segmentRows = 64
    /// Rows longer than this many blocks take `segmentedProducts`: 8 tokens' widened activations of 32 blocks are
    /// 16 KiB, half of a Zen 3's L1 (the weights stream through the other half).
    public static let segmentThreshold = 32
    /// Blocks per column segment in `segmentedProducts`.
    static let segmentBlocks = 16

    /// A block's product with one widened activation block at `px` (even bytes, then odd), as 8 floats.
    @inline(__always)
    static func wideProduct(_ even: __m256i, _ odd: __m256i, _ px: UnsafeRawPointer) -> __m256 {
        let e = _mm256_madd_epi16(even, px.loadUnaligned(as: __m256i.self))
        let o = _mm256_madd_epi16(odd, (px + 32).loadUnaligned(as: __m256i.self))
        return _mm256_cvtepi32_ps(_mm256_add_epi32(e, o))
    }

    /// Two weight rows by two activation rows (the tail of a batch).
    @inline(__always)
    static func tile2x2(
        _ w: RowPair, _ blocks: Int, _ x0: UnsafeRawPointer, _ xStride: Int,
        _ xScales: UnsafePointer<Float>, _ xScaleStride: Int, _ out: UnsafeMutablePointer<Float>, _ outStride: Int
    ) {
        let x1 = x0 + xStride
        var a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00
        for j in 0 ..< blocks {
            let o = j &* w.step
            let ox = j &* blockBytes
            if w.prefetch { w.prefetch(at: o) }
            let s = xScales + j &* xScaleStride
            let q0 = quants(x0 + ox), q1 = quants(x1 + ox)
            let v0 = w.quants0(o), v1 = w.quants1(o)
            let abs0 = _mm256_sign_epi8(v0, v0), abs1 = _mm256_sign_epi8(v1, v1)
            let d0 = w.scale0(o), d1 = w.scale1(o)
            a00 = _mm256_fmadd_ps(_mm256_set1_ps(s[0] * d0), signedProduct(abs0, v0, q0), a00)
            a01 = _mm256_fmadd_ps(_mm256_set1_ps(s[1] * d0), signedProduct(abs0, v0, q1), a01)
            a10 = _mm256_fmadd_ps(_mm256_set1_ps(s[0] * d1), signedProduct(abs1, v1, q0), a10)
            a11 = _mm256_fmadd_ps(_mm256_set1_ps(s[1] * d1), signedProduct(abs1, v1, q1), a11)
        }
        out[0] = horizontalSum(a00)
        out[1] = horizontalSum(a10)
        out[outStride] = horizontalSum(a01)
        out[outStride &+ 1] = horizontalSum(a11)
    }

    /// Two weight rows by one activation row (the tail of a batch).
    @inline(__always)
    static func tile2x1(
        _ w: RowPair, _ blocks: Int, _ x0: UnsafeRawPointer,
        _ xScales: UnsafePointer<Float>, _ xScaleStride: Int, _ out: UnsafeMutablePointer<Float>
    ) {
        var a0 = _mm256_setzero_ps(), a1 = a0
        for j in 0 ..< blocks {
            let o = j &* w.step
            if w.prefetch { w.prefetch(at: o) }
            let dx = xScales[j &* xScaleStride]
            let q = quants(x0 + j &* blockBytes)
            let v0 = w.quants0(o), v1 = w.quants1(o)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(dx * w.scale0(o)), signedProduct(_mm256_sign_epi8(v0, v0), v0, q), a0)
            a1 = _mm256_fmadd_ps(_mm256_set1_ps(dx * w.scale1(o)), signedProduct(_mm256_sign_epi8(v1, v1), v1, q), a1)
        }
        out[0] = horizontalSum(a0)
        out[1] = horizontalSum(a1)
    }

    /// Two weight rows by 4 activation rows. The 8 scale products of each block (`dx * dw`, as `matVec` forms
    /// them) go into `table` first and come back as broadcast loads: taken out of a register, each cost two
    /// shuffles on the pipes the products need.
    @inline(__always)
    static func tile2x4(
        _ w: RowPair, _ blocks: Int, _ x0: UnsafeRawPointer, _ xStride: Int,
        _ xScales: UnsafePointer<Float>, _ xScaleStride: Int, _ table: UnsafeMutablePointer<Float>,
        _ out: UnsafeMutablePointer<Float>, _ outStride: Int
    ) {
        for j in 0 ..< blocks {
            let o = j &* w.step
            let dx = UnsafeRawPointer(xScales + j &* xScaleStride).loadUnaligned(as: SIMD4<Float>.self)
            let t = UnsafeMutableRawPointer(table + j &* 8)
            t.storeBytes(of: dx * SIMD4(repeating: w.scale0(o)), as: SIMD4<Float>.self)
            t.storeBytes(of: dx * SIMD4(repeating: w.scale1(o)), toByteOffset: 16, as: SIMD4<Float>.self)
        }
        // As in `tile1x8`: the loop with and without prefetches.
        if w.prefetch {
            products2x4(w, prefetch: true, blocks, x0, xStride, table, out, outStride)
        } else {
            products2x4(w, prefetch: false, blocks, x0, xStride, table, out, outStride)
        }
    }

    @inline(__always)
    static func products2x4(
        _ w: RowPair, prefetch: Bool, _ blocks: Int, _ x0: UnsafeRawPointer, _ xStride: Int,
        _ table: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ outStride: Int
    ) {
        let x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride
        var a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00
        var a10 = a00, a11 = a00, a12 = a00, a13 = a00
        for j in 0 ..< blocks {
            let o = j &* w.step
            let ox = j &* blockBytes
            if prefetch { w.prefetch(at: o) }
            let d = UnsafePointer(table + j &* 8)
            rowStep(w.quants0(o), x0 + ox, x1 + ox, x2 + ox, x3 + ox, d, &a00, &a01, &a02, &a03)
            rowStep(w.quants1(o), x0 + ox, x1 + ox, x2 + ox, x3 + ox, d + 4, &a10, &a11, &a12, &a13)
        }
        storeSums(a00, a01, a02, a03, row: out, stride: outStride)
        storeSums(a10, a11, a12, a13, row: out + 1, stride: outStride)
    }

    /// One weight row's block times 4 tokens' blocks, with the 4 scale products at `d`.
    @inline(__always)
    static func rowStep(
        _ w: __m256i, _ p0: UnsafeRawPointer, _ p1: UnsafeRawPointer, _ p2: UnsafeRawPointer,
        _ p3: UnsafeRawPointer, _ d: UnsafePointer<Float>,
        _ a0: inout __m256, _ a1: inout __m256, _ a2: inout __m256, _ a3: inout __m256
    ) {
        let aw = _mm256_sign_epi8(w, w)
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(d), signedProduct(aw, w, quants(p0)), a0)
        a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(d + 1), signedProduct(aw, w, quants(p1)), a1)
        a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(d + 2), signedProduct(aw, w, quants(p2)), a2)
        a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(d + 3), signedProduct(aw, w, quants(p3)), a3)
    }

    /// Quantizes `count` floats (a multiple of 32) into Q8_0 blocks at `out`: per block
    /// `d = max|x| / 127`, `q = round(x / d)` with halves rounded away from zero, bit-identical to
    /// the portable quantizer.
    @inline(never)
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutableRawPointer) {
        let absMask: SIMD8<Float> = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff))
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)
        for block in 0 ..< count / 32 {
            let src = UnsafeRawPointer(x + block &* 32)
            let dst = out + block &* blockBytes
            let v0 = src.loadUnaligned(as: SIMD8<Float>.self)
            let v1 = src.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
            let v2 = src.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self)
            let v3 = src.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self)
            let m8 = _mm256_max_ps(
                _mm256_max_ps(_mm256_and_ps(v0, absMask), _mm256_and_ps(v1, absMask)),
                _mm256_max_ps(_mm256_and_ps(v2, absMask), _mm256_and_ps(v3, absMask)))
            let m4 = _mm_max_ps(m8.lowHalf, m8.highHalf)
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4))
            let amax = _mm_max_ss(m2, _mm_movehdup_ps(m2))[0]
            let d = amax / 127
            let inverse: Float = d == 0 ? 0 : 1 / d
            dst.storeBytes(of: Float16(d).bitPattern, as: UInt16.self)
            let iv = SIMD8<Float>(repeating: inverse)
            let q0 = roundAway(v0 * iv, absMask), q1 = roundAway(v1 * iv, absMask)
            let q2 = roundAway(v2 * iv, absMask), q3 = roundAway(v3 * iv, absMask)
            let bytes = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3))
            (dst + 2).storeBytes(of: _mm256_permutevar8x32_epi32(bytes, order), as: __m256i.self)
        }
    }

    // MARK: Pieces

    /// The 32 quants of the block at `p`.
    @inline(__always)
    static func quants(_ p: UnsafeRawPointer) -> __m256i {
        (p + 2).loadUnaligned(as: __m256i.self)
    }

    /// The block scale at `p` in lane 0. Loading 8 bytes and converting four halves in one
    /// `vcvtph2ps` keeps the conversion off the accumulator's dependency chain (a scalar
    /// `Float(Float16)` compiled to a `vpinsrw` chain that halved single-thread speed).
    @inline(__always)
    static func halfScale(_ p: UnsafeRawPointer) -> __m128 {
        _mm_cvtph_ps(_mm_cvtsi64_si128(p.loadUnaligned(as: Int64.self)))
    }

    /// Per-lane integer dot products of one block pair, as 8 floats (exact: |sum| < 2^24).
    @inline(__always)
    static func blockProduct(_ w: __m256i, _ x: __m256i) -> __m256 {
        signedProduct(_mm256_sign_epi8(w, w), w, x)
    }

    @inline(__always)
    static func signedProduct(_ absW: __m256i, _ w: __m256i, _ x: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(absW, _mm256_sign_epi8(x, w))
        return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    @inline(__always)
    static func accumulate(_ acc: __m256, _ pw: UnsafeRawPointer, _ xq: __m256i, _ dx: __m128) -> __m256 {
        let scale = _mm256_broadcastss_ps(_mm_mul_ss(halfScale(pw), dx))
        return _mm256_fmadd_ps(scale, blockProduct(quants(pw), xq), acc)
    }

    @inline(__always)
    static func horizontalSum(_ v: __m256) -> Float {
        // ((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7)): the order `storeSums` adds in, so a row's result
        // does not depend on whether it was summed alone or in a group of four.
        let h = _mm256_hadd_ps(v, v)
        let h2 = _mm256_hadd_ps(h, h)
        return h2[0] + h2[4]
    }

    /// Stores the lane sums of four accumulators to `out[0 ..< 4]`.
    @inline(__always)
    static func storeSums(_ a: __m256, _ b: __m256, _ c: __m256, _ d: __m256, to out: UnsafeMutablePointer<Float>) {
        let h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d))
        UnsafeMutableRawPointer(out).storeBytes(of: _mm_add_ps(h.lowHalf, h.highHalf), as: __m128.self)
    }

    /// Stores the lane sums of four accumulators to `row[0]`, `row[stride]`, `row[2 * stride]`, `row[3 * stride]`.
    @inline(__always)
    static func storeSums(
        _ a: __m256, _ b: __m256, _ c: __m256, _ d: __m256, row: UnsafeMutablePointer<Float>, stride: Int
    ) {
        let h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d))
        let sums = _mm_add_ps(h.lowHalf, h.highHalf)
        row[0] = sums[0]
        row[stride] = sums[1]
        row[2 &* stride] = sums[2]
        row[3 &* stride] = sums[3]
    }

    /// `p` rounded to the nearest integer, halves away from zero (C `roundf`), as Int32 lanes.
    /// `vroundps` has no such mode, so truncate and step by one where the dropped part is >= 0.5.
    @inline(__always)
    static func roundAway(_ p: SIMD8<Float>, _ absMask: SIMD8<Float>) -> __m256i {
        let truncated = _mm256_cvttps_epi32(p)
        let fraction: SIMD8<Float> = _mm256_and_ps(_mm256_sub_ps(p, _mm256_cvtepi32_ps(truncated)), absMask)
        let away = SIMD8<Int32>(repeating: 0).replacing(with: 1, where: fraction .>= 0.5)
        // The float's sign bit read as an Int32 carries the sign of p (a zero p has no fraction).
        let step = _mm256_sign_epi32(unsafeBitCast(away, to: __m256i.self), _mm256_castps_si256(p))
        return _mm256_add_epi32(truncated, step)
    }
}
#endif
