#if arch(x86_64)
internal import _Builtin_intrinsics.intel
internal import CFlywheelKernels

/// Q8_0 kernels for x86-64 CPUs with AVX-512 F/BW/VL and VNNI: `vpdpbusd` multiplies unsigned by
/// signed bytes and adds each group of four products into a 32-bit lane, in one instruction.
///
/// Layout: one 512-bit register holds two consecutive 32-quant blocks (low and high 256 bits), so
/// its 16 Int32 lanes are 8 partial sums of one block and 8 of the next; the float scale vector
/// holds the first block's scale product in its low 8 lanes and the second's in its high 8. A row
/// with an odd number of blocks ends with a half-empty pair whose high half is zero.
///
/// Signs: `vpdpbusd` wants one unsigned operand. The weights are biased to unsigned (`w + 128`,
/// an xor with 0x80, exact for every `Int8` including -128) and the activations stay signed, so a
/// pair sum is `Σ(w + 128)·x = Σw·x + 128·Σx`; the accumulator starts at `-128·Σx` per lane,
/// computed once per activation row, and the integer result is exact. Each output is the same
/// sequence of float operations whether it comes from `dot`, `matVec` or a `matMul` tile, so the
/// three agree bit for bit.
///
/// This module is compiled for AVX-512 VNNI CPUs (Ice Lake and later): calling anything here on
/// another CPU is an illegal instruction. `FlywheelKernels` checks the CPU once and only then calls
/// in; nothing else should import this module. Functions are `@inline(never)` so no AVX-512 code is
/// inlined into a caller compiled for baseline x86-64.
///
/// Operand contract: the first operand (weights) may hold any `Int8`; the second (activations)
/// must stay within -127...127, the range `Q8Block.quantize` produces.
public enum AVX512Kernels {
    static let blockBytes = 34
    static let pairBytes = 68
    /// Bytes of one prepared activation block pair: 64 quants, 16 Int32 corrections, 16 float scales.
    static let preparedPairBytes = 192

    /// Dot product of two Q8_0 rows of `blocks` blocks (`b` is the activation operand).
    @inline(never)
    public static func dot(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, blocks: Int) -> Float {
        let halves = halfSelector()
        var acc = _mm512_setzero_ps()
        forEachPair(blocks) { p, full in
            let o = p &* pairBytes
            let (wq, dw) = weightPair(a + o, full, halves)
            let (xq, correction, dx) = activationPair(b + o, full, halves)
            acc = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(correction, wq, xq)), _mm512_mul_ps(dw, dx), acc)
        }
        return reduce(acc)
    }

    /// `out[r] = W[r] · x` for `r` in `rows`, where row `r` of W starts at `base + r * rowStride`
    /// and has `blocks` blocks, and `x` is one quantized row of `blocks` blocks.
    ///
    /// Four weight rows per pass share each prepared activation pair; weights are prefetched ahead.
    @inline(never)
    public static func matVec(
        base: UnsafeRawPointer, rowStride: Int, blocks: Int, x: UnsafeRawPointer,
        into out: UnsafeMutablePointer<Float>, rows: Range<Int>
    ) {
        guard !rows.isEmpty, blocks > 0 else {
            for r in rows { out[r] = 0 }
            return
        }
        withPrepared(x, xStride: 0, batch: 1, blocks: blocks) { prepared, _ in
            rowsOfOneToken(base, rowStride, blocks, prepared, out, rows, halfSelector(), prefetch: true)
        }
    }

    /// `out[b * outStride + r] = W[r] · x[b]` for `r` in `rows` and `b` in `0 ..< batch`, where
    /// activation row `b` starts at `x + b * xStride`.
    ///
    /// Tokens go in panels of 8 (the last takes what is left, up to 15); a panel walks the rows in
    /// groups of 3: a 3 x 8 tile (24 accumulators), a 3 x 4 tile (12 accumulators, the 4 prepared
    /// activation pairs in registers), then a 3 x 1...3 tile for the last tokens, all on the same three
    /// rows while they are in L1. So each weight pair is loaded and biased once per panel, and a batch
    /// of up to 15 (continuous batching's decode steps) streams the weights once. Leftover rows go one
    /// output at a time; all give the same bits as `matVec`.
    @inline(never)
    public static func matMul(
        base: UnsafeRawPointer, rowStride: Int, blocks: Int, x: UnsafeRawPointer, xStride: Int, batch: Int,
        into out: UnsafeMutablePointer<Float>, outStride: Int, rows: Range<Int>
    ) {
        guard batch > 0, !rows.isEmpty else { return }
        guard blocks > 0 else {
            for b in 0 ..< batch { for r in rows { out[b &* outStride &+ r] = 0 } }
            return
        }
        withPrepared(x, xStride: xStride, batch: batch, blocks: blocks) { prepared, tokenStride in
            let halves = halfSelector()
            let fullRows = rows.lowerBound &+ rows.count / 3 &* 3
            // Panels of 8 tokens (the last one takes the 0...7 left over): each walks the rows once, so its
            // activations stay in L1 beside the weights (16 tokens at a time would not fit).
            var panel = 0
            while panel < batch {
                let tokens = batch &- panel < 16 ? batch &- panel : 8
                var r = rows.lowerBound
                while r < fullRows {
                    let w = base + r &* rowStride
                    // The first tile of a row group prefetches the group after next (six rows ahead); the others
                    // find the three rows in L1.
                    var ahead = rowStride &* 6
                    var t = 0
                    while t &+ 8 <= tokens {
                        tile3x8(w, rowStride, blocks, prepared + (panel &+ t) &* tokenStride, tokenStride,
                                out + ((panel &+ t) &* outStride &+ r), outStride, halves, ahead)
                        ahead = 0
                        t &+= 8
                    }
                    while t &+ 4 <= tokens {
                        tile3x4(w, rowStride, blocks, prepared + (panel &+ t) &* tokenStride, tokenStride,
                                out + ((panel &+ t) &* outStride &+ r), outStride, halves, ahead)
                        ahead = 0
                        t &+= 4
                    }
                    if t < tokens {
                        tile3xTail(w, rowStride, blocks, prepared + (panel &+ t) &* tokenStride, tokenStride, tokens &- t,
                                   out + ((panel &+ t) &* outStride &+ r), outStride, halves, ahead)
                    }
                    r &+= 3
                }
                panel &+= tokens
            }
            // The last rows.count % 3 rows, one output at a time.
            var r = fullRows
            while r < rows.upperBound {
                for b in 0 ..< batch {
                    out[b &* outStride &+ r] = single(base + r &* rowStride, blocks, prepared + b &* tokenStride,
                                                      halves)
                }
                r &+= 1
            }
        }
    }

    // MARK: Tiles

    /// `out[r]` for `r` in `rows` against one prepared activation row: four rows per pass.
    @inline(__always)
    static func rowsOfOneToken(
        _ base: UnsafeRawPointer, _ rowStride: Int, _ blocks: Int, _ x: UnsafeRawPointer,
        _ out: UnsafeMutablePointer<Float>, _ rows: Range<Int>, _ halves: __m512i, prefetch: Bool
    ) {
        var r = rows.lowerBound
        while r &+ 4 <= rows.upperBound {
            tile4x1(base + r &* rowStride, rowStride, blocks, x, out + r, 1, halves, prefetch: prefetch)
            r &+= 4
        }
        while r < rows.upperBound {
            out[r] = single(base + r &* rowStride, blocks, x, halves)
            r &+= 1
        }
    }

    @inline(__always)
    static func tile3x4(
        _ w0: UnsafeRawPointer, _ rowStride: Int, _ blocks: Int, _ x0: UnsafeRawPointer, _ tokenStride: Int,
        _ out: UnsafeMutablePointer<Float>, _ outStride: Int, _ halves: __m512i,
        _ ahead: Int
    ) {
        let w1 = w0 + rowStride, w2 = w1 + rowStride
        let x1 = x0 + tokenStride, x2 = x1 + tokenStride, x3 = x2 + tokenStride
        var a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00
        var a10 = a00, a11 = a00, a12 = a00, a13 = a00
        var a20 = a00, a21 = a00, a22 = a00, a23 = a00
        forEachPair(blocks) { p, full in
            let o = p &* pairBytes, xo = p &* preparedPairBytes
            if ahead != 0 { prefetchPairs(w0, w1, w2, at: o &+ ahead) }
            let (q0, d0) = weightPair(w0 + o, full, halves)
            rowStep(q0, d0, x0 + xo, x1 + xo, x2 + xo, x3 + xo, &a00, &a01, &a02, &a03)
            let (q1, d1) = weightPair(w1 + o, full, halves)
            rowStep(q1, d1, x0 + xo, x1 + xo, x2 + xo, x3 + xo, &a10, &a11, &a12, &a13)
            let (q2, d2) = weightPair(w2 + o, full, halves)
            rowStep(q2, d2, x0 + xo, x1 + xo, x2 + xo, x3 + xo, &a20, &a21, &a22, &a23)
        }
        store(a00, a10, a20, to: out)
        store(a01, a11, a21, to: out + outStride)
        store(a02, a12, a22, to: out + 2 &* outStride)
        store(a03, a13, a23, to: out + 3 &* outStride)
    }

    /// Three weight rows by eight prepared activation rows: each weight pair is loaded and biased once for eight
    /// tokens and the rows stream past once (two 3 x 4 tiles would walk the rows twice and hold twice the
    /// activations in L1 at a time).
    @inline(__always)
    static func tile3x8(
        _ w0: UnsafeRawPointer, _ rowStride: Int, _ blocks: Int, _ x0: UnsafeRawPointer, _ tokenStride: Int,
        _ out: UnsafeMutablePointer<Float>, _ outStride: Int, _ halves: __m512i,
        _ ahead: Int
    ) {
        let w1 = w0 + rowStride, w2 = w1 + rowStride
        let zero = _mm512_setzero_ps()
        var a0 = (zero, zero, zero, zero, zero, zero, zero, zero)
        var a1 = a0, a2 = a0
        forEachPair(blocks) { p, full in
            let o = p &* pairBytes
            if ahead != 0 { prefetchPairs(w0, w1, w2, at: o &+ ahead) }
            let x = x0 + p &* preparedPairBytes
            let (q0, d0) = weightPair(w0 + o, full, halves)
            let (q1, d1) = weightPair(w1 + o, full, halves)
            let (q2, d2) = weightPair(w2 + o, full, halves)
            @inline(__always) func token(_ t: Int, _ s0: inout __m512, _ s1: inout __m512, _ s2: inout __m512) {
                let xt = x + t &* tokenStride
                s0 = accumulate(s0, q0, d0, xt)
                s1 = accumulate(s1, q1, d1, xt)
                s2 = accumulate(s2, q2, d2, xt)
            }
            token(0, &a0.0, &a1.0, &a2.0)
            token(1, &a0.1, &a1.1, &a2.1)
            token(2, &a0.2, &a1.2, &a2.2)
            token(3, &a0.3, &a1.3, &a2.3)
            token(4, &a0.4, &a1.4, &a2.4)
            token(5, &a0.5, &a1.5, &a2.5)
            token(6, &a0.6, &a1.6, &a2.6)
            token(7, &a0.7, &a1.7, &a2.7)
        }
        store(a0.0, a1.0, a2.0, to: out)
        store(a0.1, a1.1, a2.1, to: out + outStride)
        store(a0.2, a1.2, a2.2, to: out + 2 &* outStride)
        store(a0.3, a1.3, a2.3, to: out + 3 &* outStride)
        store(a0.4, a1.4, a2.4, to: out + 4 &* outStride)
        store(a0.5, a1.5, a2.5, to: out + 5 &* outStride)
        store(a0.6, a1.6, a2.6, to: out + 6 &* outStride)
        store(a0.7, a1.7, a2.7, to: out + 7 &* outStride)
    }

    /// Three weight rows by `tokens` (1...3) prepared activation rows: the tail of a batch.
    @inline(__always)
    static func tile3xTail(
        _ w0: UnsafeRawPointer, _ rowStride: Int, _ blocks: Int, _ x0: UnsafeRawPointer, _ tokenStride: Int,
        _ tokens: Int, _ out: UnsafeMutablePointer<Float>, _ outStride: Int, _ halves: __m512i,
        _ ahead: Int
    ) {
        let w1 = w0 + rowStride, w2 = w1 + rowStride
        let x1 = x0 + tokenStride, x2 = x1 + tokenStride
        var a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00
        var a10 = a00, a11 = a00, a12 = a00
        var a20 = a00, a21 = a00, a22 = a00
        forEachPair(blocks) { p, full in
            let o = p &* pairBytes, xo = p &* preparedPairBytes
            if ahead != 0 { prefetchPairs(w0, w1, w2, at: o &+ ahead) }
            let (q0, d0) = weightPair(w0 + o, full, halves)
            let (q1, d1) = weightPair(w1 + o, full, halves)
            let (q2, d2) = weightPair(w2 + o, full, halves)
            a00 = accumulate(a00, q0, d0, x0 + xo)
            a10 = accumulate(a10, q1, d1, x0 + xo)
            a20 = accumulate(a20, q2, d2, x0 + xo)
            if tokens > 1 {
                a01 = accumulate(a01, q0, d0, x1 + xo)
                a11 = accumulate(a11, q1, d1, x1 + xo)
                a21 = accumulate(a21, q2, d2, x1 + xo)
            }
            if tokens > 2 {
                a02 = accumulate(a02, q0, d0, x2 + xo)
                a12 = accumulate(a12, q1, d1, x2 + xo)
                a22 = accumulate(a22, q2, d2, x2 + xo)
            }
        }
        store(a00, a10, a20, to: out)
        if tokens > 1 { store(a01, a11, a21, to: out + outStride) }
        if tokens > 2 { store(a02, a12, a22, to: out + 2 &* outStride) }
    }

    /// Four weight rows against one prepared activation row; results to `out[0]`, `out[step]`, ...
    @inline(__always)
    static func tile4x1(
        _ w0: UnsafeRawPointer, _ rowStride: Int, _ blocks: Int, _ x: UnsafeRawPointer,
        _ out: UnsafeMutablePointer<Float>, _ step: Int, _ halves: __m512i, prefetch: Bool
    ) {
        let w1 = w0 + rowStride, w2 = w1 + rowStride, w3 = w2 + rowStride
        var a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0
        forEachPair(blocks) { p, full in
            let o = p &* pairBytes, xp = x + p &* preparedPairBytes
            if prefetch {
                // The next group of four rows at this offset: a whole group ahead of the loads (512 bytes ahead
                // in the same row kept too few lines in flight: 61 -> 91 GB/s cold on 2 threads, kernel-bench).
                let ahead = o &+ rowStride &* 4
                fw_prefetch(w0 + ahead)
                fw_prefetch(w0 + (ahead &+ 64))
                fw_prefetch(w1 + ahead)
                fw_prefetch(w1 + (ahead &+ 64))
                fw_prefetch(w2 + ahead)
                fw_prefetch(w2 + (ahead &+ 64))
                fw_prefetch(w3 + ahead)
                fw_prefetch(w3 + (ahead &+ 64))
            }
            let (q0, d0) = weightPair(w0 + o, full, halves)
            a0 = accumulate(a0, q0, d0, xp)
            let (q1, d1) = weightPair(w1 + o, full, halves)
            a1 = accumulate(a1, q1, d1, xp)
            let (q2, d2) = weightPair(w2 + o, full, halves)
            a2 = accumulate(a2, q2, d2, xp)
            let (q3, d3) = weightPair(w3 + o, full, halves)
            a3 = accumulate(a3, q3, d3, xp)
        }
        out[0] = reduce(a0)
        out[step] = reduce(a1)
        out[2 &* step] = reduce(a2)
        out[3 &* step] = reduce(a3)
    }

    /// Prefetches the 68-byte block pair at byte `offset` of three rows (two cache lines each).
    @inline(__always)
    static func prefetchPairs(_ w0: UnsafeRawPointer, _ w1: UnsafeRawPointer, _ w2: UnsafeRawPointer, at offset: Int) {
        fw_prefetch(w0 + offset)
        fw_prefetch(w0 + (offset &+ 64))
        fw_prefetch(w1 + offset)
        fw_prefetch(w1 + (offset &+ 64))
        fw_prefetch(w2 + offset)
        fw_prefetch(w2 + (offset &+ 64))
    }

    /// One weight row against one prepared activation row.
    @inline(__always)
    static func single(_ w: UnsafeRawPointer, _ blocks: Int, _ x: UnsafeRawPointer, _ halves: __m512i) -> Float {
        var acc = _mm512_setzero_ps()
        forEachPair(blocks) { p, full in
            let (q, d) = weightPair(w + p &* pairBytes, full, halves)
            acc = accumulate(acc, q, d, x + p &* preparedPairBytes)
        }
        return reduce(acc)
    }

    @inline(__always)
    static func rowStep(
        _ wq: __m512i, _ dw: __m512, _ p0: UnsafeRawPointer, _ p1: UnsafeRawPointer, _ p2: UnsafeRawPointer,
        _ p3: UnsafeRawPointer, _ a0: inout __m512, _ a1: inout __m512, _ a2: inout __m512, _ a3: inout __m512
    ) {
        a0 = accumulate(a0, wq, dw, p0)
        a1 = accumulate(a1, wq, dw, p1)
        a2 = accumulate(a2, wq, dw, p2)
        a3 = accumulate(a3, wq, dw, p3)
    }

    /// `acc + float(Σ w·x per lane) * (dw * dx)` for one weight pair and one prepared activation pair.
    @inline(__always)
    static func accumulate(_ acc: __m512, _ wq: __m512i, _ dw: __m512, _ x: UnsafeRawPointer) -> __m512 {
        let xq = x.load(as: __m512i.self)
        let correction = x.load(fromByteOffset: 64, as: __m512i.self)
        let dx = x.load(fromByteOffset: 128, as: __m512.self)
        let sums = _mm512_dpbusd_epi32(correction, wq, xq)
        return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(dw, dx), acc)
    }

    // MARK: Pieces

    /// Calls `body` for each block pair of a row of `blocks` blocks with whether the pair is full:
    /// all full pairs first, then the odd last block, so the hot loop has no branch on it.
    @inline(__always)
    static func forEachPair(_ blocks: Int, _ body: (Int, Bool) -> Void) {
        let fullPairs = blocks >> 1
        var p = 0
        while p < fullPairs {
            body(p, true)
            p &+= 1
        }
        if blocks & 1 != 0 { body(fullPairs, false) }
    }

    /// Runs `body` with the activation rows rearranged for the tiles: per row and block pair, the
    /// 64 quants, the 16 lanes' `-128·Σx` and the 16 lanes' scales (`preparedPairBytes`, 64-aligned).
    /// `body` gets the buffer and the bytes per prepared row.
    @inline(__always)
    static func withPrepared<T>(
        _ x: UnsafeRawPointer, xStride: Int, batch: Int, blocks: Int,
        _ body: (UnsafeRawPointer, Int) -> T
    ) -> T {
        let pairs = (blocks &+ 1) >> 1
        let tokenStride = pairs &* preparedPairBytes
        return withUnsafeTemporaryAllocation(byteCount: batch &* tokenStride, alignment: 64) { buffer in
            let base = buffer.baseAddress!
            let halves = halfSelector()
            for b in 0 ..< batch {
                let row = x + b &* xStride
                for p in 0 ..< pairs {
                    let (xq, correction, dx) = activationPair(row + p &* pairBytes, p &* 2 &+ 1 < blocks, halves)
                    let dst = base + (b &* tokenStride &+ p &* preparedPairBytes)
                    dst.storeBytes(of: xq, as: __m512i.self)
                    dst.storeBytes(of: correction, toByteOffset: 64, as: __m512i.self)
                    dst.storeBytes(of: dx, toByteOffset: 128, as: __m512.self)
                }
            }
            return body(UnsafeRawPointer(base), tokenStride)
        }
    }

    /// The activation pair at `p`: its quants, the per-lane `-128·Σx` that cancels the weights'
    /// bias, and its scales. A pair that is not `full` has zero quants and scales in its high half.
    @inline(__always)
    static func activationPair(
        _ p: UnsafeRawPointer, _ full: Bool, _ halves: __m512i
    ) -> (__m512i, __m512i, __m512) {
        let xq = pairQuants(p, full)
        let biased = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(-128), xq)
        return (xq, _mm512_sub_epi32(_mm512_setzero_si512(), biased), pairScales(p, full, halves))
    }

    /// The weight pair at `p`, biased to unsigned (`w + 128`), and its scales.
    @inline(__always)
    static func weightPair(_ p: UnsafeRawPointer, _ full: Bool, _ halves: __m512i) -> (__m512i, __m512) {
        (_mm512_xor_si512(pairQuants(p, full), _mm512_set1_epi8(-128)), pairScales(p, full, halves))
    }

    /// The quants of the blocks at `p` and `p + 34`, or of `p` and zeros when not `full` (so a row's
    /// last odd block never reads past the row).
    @inline(__always)
    static func pairQuants(_ p: UnsafeRawPointer, _ full: Bool) -> __m512i {
        // Masked loads: the low half from p + 2, the high half (qwords 4...7) from (p + 4) + 32.
        let low = _mm512_maskz_loadu_epi64(0x0F, p + 2)
        return full ? _mm512_mask_loadu_epi64(low, 0xF0, p + 4) : low
    }

    /// The scales of the blocks at `p` and `p + 34` (zero for the second when not `full`), the first
    /// in lanes 0...7 and the second in lanes 8...15.
    @inline(__always)
    static func pairScales(_ p: UnsafeRawPointer, _ full: Bool, _ halves: __m512i) -> __m512 {
        let first = UInt32(p.loadUnaligned(as: UInt16.self))
        let second = full ? UInt32((p + 34).loadUnaligned(as: UInt16.self)) : 0
        let two = _mm_cvtph_ps(_mm_cvtsi32_si128(Int32(bitPattern: first | second << 16)))
        return _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(two))
    }

    /// The `vpermps` index that spreads lane 0 over lanes 0...7 and lane 1 over lanes 8...15.
    @inline(__always)
    static func halfSelector() -> __m512i {
        _mm512_maskz_set1_epi32(0xFF00, 1)
    }

    /// The sum of the 16 lanes, always in the same order: halves, then quarters, then pairs.
    @inline(__always)
    static func reduce(_ v: __m512) -> Float {
        let s8 = v.lowHalf + v.highHalf
        let s4 = s8.lowHalf + s8.highHalf
        return (s4[0] + s4[2]) + (s4[1] + s4[3])
    }

    /// Stores the lane sums of three accumulators to `out[0 ..< 3]`, each summed as `reduce` sums.
    @inline(__always)
    static func store(_ a: __m512, _ b: __m512, _ c: __m512, to out: UnsafeMutablePointer<Float>) {
        out[0] = reduce(a)
        out[1] = reduce(b)
        out[2] = reduce(c)
    }
}
#endif
