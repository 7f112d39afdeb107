/// Rows of any tensor type `GGUFTensorType` has a layout for, expanded to floats.
///
/// Written from ggml's block layouts (documented on `GGUFTensorType`) and checked bit for bit against
/// llama.cpp's own `dequantize_row_*` functions (QuantizedTypesTests, fixtures from
/// scripts/engine/make_quant_fixtures.py). The results do not depend on the order of the operations: scales
/// are f16 (11 significant bits) times integers of at most 8 bits, so every product but the last fits a
/// binary32 exactly and each element is rounded once (the last product, or the min added or subtracted after an
/// exact product), as in ggml, with or without fused multiply-adds.
///
/// The loader uses these once per row at load time, to requantize the row to Q8_0 for the kernels.
public enum Dequantization {
    /// Whether `dequantize` handles `type` (every type with a layout).
    public static func canDequantize(_ type: GGUFTensorType) -> Bool { type.isSupported }

    /// Writes `count` elements of a `type` row stored at `source` to `out`. `count` must be a whole
    /// number of the type's blocks and `source` must hold `count / blockSize * blockBytes` bytes.
    public static func dequantize(
        _ type: GGUFTensorType, _ source: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>
    ) {
        guard let layout = type.layout else { preconditionFailure("no layout for \(type)") }
        precondition(count >= 0 && count % layout.blockSize == 0, "\(type) rows are whole blocks of \(layout.blockSize)")
        let x = source.assumingMemoryBound(to: UInt8.self)
        let blocks = count / layout.blockSize
        switch type {
        case .f32: f32(x, count, out)
        case .f16: f16(x, count, out)
        case .bf16: bf16(x, count, out)
        case .q4_0: q4_0(x, blocks, out)
        case .q4_1: q4_1(x, blocks, out)
        case .q5_0: q5_0(x, blocks, out)
        case .q5_1: q5_1(x, blocks, out)
        case .q8_0: q8_0(x, blocks, out)
        case .iq4_nl: iq4_nl(x, blocks, out)
        case .q2_K: q2_K(x, blocks, out)
        case .q3_K: q3_K(x, blocks, out)
        case .q4_K: q4_K(x, blocks, out)
        case .q5_K: q5_K(x, blocks, out)
        case .q6_K: q6_K(x, blocks, out)
        case .iq4_xs: iq4_xs(x, blocks, out)
        default: preconditionFailure("no dequantizer for \(type)")
        }
    }

    // MARK: Helpers

    /// A little-endian IEEE binary16 at `p`.
    @inline(__always)
    static func f16At(_ p: UnsafePointer<UInt8>) -> Float {
        Float(Float16(bitPattern: UInt16(p[0]) | UInt16(p[1]) << 8))
    }

    @inline(__always)
    private static func u32(_ p: UnsafePointer<UInt8>) -> UInt32 {
        UInt32(p[0]) | UInt32(p[1]) << 8 | UInt32(p[2]) << 16 | UInt32(p[3]) << 24
    }

    /// ggml's `kvalues_iq4nl`: the 16 levels of IQ4_NL and IQ4_XS.
    private static let iq4Levels: [Float] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

    // MARK: Plain types

    private static func f32(_ x: UnsafePointer<UInt8>, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(y).copyMemory(from: x, byteCount: count * 4)  // little-endian host
    }

    private static func f16(_ x: UnsafePointer<UInt8>, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        for i in 0 ..< count { y[i] = f16At(x + 2 * i) }
    }

    private static func bf16(_ x: UnsafePointer<UInt8>, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        for i in 0 ..< count {
            y[i] = Float(bitPattern: (UInt32(x[2 * i]) | UInt32(x[2 * i + 1]) << 8) << 16)
        }
    }

    // MARK: Blocks of 32

    private static func q4_0(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = x + 18 * b, out = y + 32 * b
            let d = f16At(block)
            let qs = block + 2
            for j in 0 ..< 16 {
                out[j] = d * Float(Int32(qs[j] & 0x0F) - 8)
                out[j + 16] = d * Float(Int32(qs[j] >> 4) - 8)
            }
        }
    }

    private static func q4_1(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = x + 20 * b, out = y + 32 * b
            let d = f16At(block), m = f16At(block + 2)
            let qs = block + 4
            for j in 0 ..< 16 {
                out[j] = d * Float(qs[j] & 0x0F) + m
                out[j + 16] = d * Float(qs[j] >> 4) + m
            }
        }
    }

    private static func q5_0(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = x + 22 * b, out = y + 32 * b
            let d = f16At(block)
            let qh = u32(block + 2)
            let qs = block + 6
            for j in 0 ..< 16 {
                let low = UInt32(qs[j] & 0x0F) | ((qh >> UInt32(j)) & 1) << 4
                let high = UInt32(qs[j] >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
                out[j] = d * Float(Int32(low) - 16)
                out[j + 16] = d * Float(Int32(high) - 16)
            }
        }
    }

    private static func q5_1(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = x + 24 * b, out = y + 32 * b
            let d = f16At(block), m = f16At(block + 2)
            let qh = u32(block + 4)
            let qs = block + 8
            for j in 0 ..< 16 {
                let low = UInt32(qs[j] & 0x0F) | ((qh >> UInt32(j)) & 1) << 4
                let high = UInt32(qs[j] >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
                out[j] = d * Float(low) + m
                out[j + 16] = d * Float(high) + m
            }
        }
    }

    private static func q8_0(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = x + 34 * b, out = y + 32 * b
            let d = f16At(block)
            for j in 0 ..< 32 { out[j] = d * Float(Int8(bitPattern: block[2 + j])) }
        }
    }

    private static func iq4_nl(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        iq4Levels.withUnsafeBufferPointer { levels in
            for b in 0 ..< blocks {
                let block = x + 18 * b, out = y + 32 * b
                let d = f16At(block)
                let qs = block + 2
                for j in 0 ..< 16 {
                    out[j] = d * levels[Int(qs[j] & 0x0F)]
                    out[j + 16] = d * levels[Int(qs[j] >> 4)]
                }
            }
        }
    }

    // MARK: Super-blocks of 256

    /// Q2_K: per 16 elements a 4-bit scale and a 4-bit min; 2-bit quants, four to a byte. Byte `l` of each
    /// 32-byte half of `qs` holds elements `l`, `l + 32`, `l + 64` and `l + 96` of that half's 128.
    private static func q2_K(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = x + 84 * b, out = y + 256 * b
            let scales = block, qs = block + 16
            let d = f16At(block + 80), dmin = f16At(block + 82)
            for half in 0 ..< 2 {
                for shift in 0 ..< 4 {
                    for part in 0 ..< 2 {
                        let sc = scales[half * 8 + shift * 2 + part]
                        let dl = d * Float(sc & 0x0F), ml = dmin * Float(sc >> 4)
                        let q = qs + half * 32 + part * 16
                        let dst = out + half * 128 + shift * 32 + part * 16
                        let s = UInt8(2 * shift)
                        for l in 0 ..< 16 { dst[l] = dl * Float((q[l] >> s) & 3) - ml }
                    }
                }
            }
        }
    }

    /// Q3_K: the low 2 bits as in Q2_K; bit `e / 32` of `hmask[e % 32]` is the third bit of element `e`,
    /// set meaning "no offset" and clear meaning "minus 4". Sixteen 6-bit scales: low nibbles in bytes
    /// 0..<8 (scales 0..<8 low, 8..<16 high nibble), the top 2 bits in bytes 8..<12, two per scale group of four.
    private static func q3_K(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = x + 110 * b, out = y + 256 * b
            let hmask = block, qs = block + 32, packed = block + 96
            let d = f16At(block + 108)
            for half in 0 ..< 2 {
                for shift in 0 ..< 4 {
                    for part in 0 ..< 2 {
                        let k = half * 8 + shift * 2 + part
                        let low = k < 8 ? packed[k] & 0x0F : packed[k - 8] >> 4
                        let high = (packed[8 + k % 4] >> UInt8(2 * (k / 4))) & 3
                        let dl = d * Float(Int32(low | high << 4) - 32)
                        let q = qs + half * 32 + part * 16
                        let h = hmask + part * 16
                        let dst = out + half * 128 + shift * 32 + part * 16
                        let s = UInt8(2 * shift), bit = UInt8(half * 4 + shift)
                        for l in 0 ..< 16 {
                            let value = Int32((q[l] >> s) & 3) - ((h[l] >> bit) & 1 == 0 ? 4 : 0)
                            dst[l] = dl * Float(value)
                        }
                    }
                }
            }
        }
    }

    /// Scale and min of sub-block `j` (0..<8) of a Q4_K/Q5_K super-block: ggml's `get_scale_min_k4`.
    @inline(__always)
    private static func scaleMin(_ s: UnsafePointer<UInt8>, _ j: Int) -> (scale: Float, min: Float) {
        if j < 4 {
            return (Float(s[j] & 63), Float(s[j + 4] & 63))
        }
        return (Float((s[j + 4] & 0x0F) | (s[j - 4] >> 6) << 4), Float((s[j + 4] >> 4) | (s[j] >> 6) << 4))
    }

    /// Q4_K: eight sub-blocks of 32; byte `l` of the `c`-th 32 bytes of `qs` holds element `64c + l`
    /// (low nibble, sub-block 2c) and `64c + 32 + l` (high nibble, sub-block 2c + 1).
    private static func q4_K(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = x + 144 * b, out = y + 256 * b
            let d = f16At(block), dmin = f16At(block + 2)
            let scales = block + 4, qs = block + 16
            for c in 0 ..< 4 {
                let (sc1, m1) = scaleMin(scales, 2 * c), (sc2, m2) = scaleMin(scales, 2 * c + 1)
                let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
                let q = qs + 32 * c, dst = out + 64 * c
                for l in 0 ..< 32 {
                    dst[l] = d1 * Float(q[l] & 0x0F) - min1
                    dst[l + 32] = d2 * Float(q[l] >> 4) - min2
                }
            }
        }
    }

    /// Q5_K: Q4_K plus a fifth bit: bit `e / 32` of `qh[e % 32]` for element `e`.
    private static func q5_K(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = x + 176 * b, out = y + 256 * b
            let d = f16At(block), dmin = f16At(block + 2)
            let scales = block + 4, qh = block + 16, qs = block + 48
            for c in 0 ..< 4 {
                let (sc1, m1) = scaleMin(scales, 2 * c), (sc2, m2) = scaleMin(scales, 2 * c + 1)
                let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
                let q = qs + 32 * c, dst = out + 64 * c
                let bit1 = UInt8(2 * c), bit2 = UInt8(2 * c + 1)
                for l in 0 ..< 32 {
                    let low = (q[l] & 0x0F) | ((qh[l] >> bit1) & 1) << 4
                    let high = (q[l] >> 4) | ((qh[l] >> bit2) & 1) << 4
                    dst[l] = d1 * Float(low) - min1
                    dst[l + 32] = d2 * Float(high) - min2
                }
            }
        }
    }

    /// Q6_K: two halves of 128; in each, byte `l` of the 64 `ql` bytes holds elements `l` (low nibble)
    /// and `l + 64` (high nibble), byte `l` of the 32 `qh` bytes the top 2 bits of elements `l`, `l + 32`,
    /// `l + 64`, `l + 96`. One `Int8` scale per 16 elements.
    private static func q6_K(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let block = x + 210 * b, out = y + 256 * b
            let d = f16At(block + 208)
            let scales = block + 192
            for half in 0 ..< 2 {
                let ql = block + 64 * half, qh = block + 128 + 32 * half
                let dst = out + 128 * half
                for part in 0 ..< 2 {
                    let sc = scales + 8 * half + part
                    let d1 = d * Float(Int8(bitPattern: sc[0])), d2 = d * Float(Int8(bitPattern: sc[2]))
                    let d3 = d * Float(Int8(bitPattern: sc[4])), d4 = d * Float(Int8(bitPattern: sc[6]))
                    for l in 16 * part ..< 16 * part + 16 {
                        let q1 = Int32((ql[l] & 0x0F) | (qh[l] & 3) << 4) - 32
                        let q2 = Int32((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) - 32
                        let q3 = Int32((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32
                        let q4 = Int32((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32
                        dst[l] = d1 * Float(q1)
                        dst[l + 32] = d2 * Float(q2)
                        dst[l + 64] = d3 * Float(q3)
                        dst[l + 96] = d4 * Float(q4)
                    }
                }
            }
        }
    }

    /// IQ4_XS: eight sub-blocks of 32 with 6-bit scales (low 4 bits in `scales_l`, two sub-blocks to a byte;
    /// top 2 bits in `scales_h`), nibbles laid out as in IQ4_NL.
    private static func iq4_xs(_ x: UnsafePointer<UInt8>, _ blocks: Int, _ y: UnsafeMutablePointer<Float>) {
        iq4Levels.withUnsafeBufferPointer { levels in
            for b in 0 ..< blocks {
                let block = x + 136 * b, out = y + 256 * b
                let d = f16At(block)
                let high = UInt16(block[2]) | UInt16(block[3]) << 8
                let low = block + 4, qs = block + 8
                for sub in 0 ..< 8 {
                    let ls = UInt16((low[sub / 2] >> UInt8(4 * (sub % 2))) & 0x0F) | ((high >> UInt16(2 * sub)) & 3) << 4
                    let dl = d * Float(Int32(ls) - 32)
                    let q = qs + 16 * sub, dst = out + 32 * sub
                    for j in 0 ..< 16 {
                        dst[j] = dl * levels[Int(q[j] & 0x0F)]
                        dst[j + 16] = dl * levels[Int(q[j] >> 4)]
                    }
                }
            }
        }
    }
}
