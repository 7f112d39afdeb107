import CFlywheelKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which implementation `Kernels` and `Q8Block.quantize` use on this machine.
///
/// Chosen once per process, the first time a kernel runs: `avx512vnni` when the CPU and OS support
/// AVX-512 F/BW/VL/VNNI (and AVX2, FMA, F16C), else `avx2` when they support AVX2, FMA and F16C,
/// else `portable`. The environment variable `FLYWHEEL_KERNELS`, set before the process starts,
/// caps the choice: `avx2` rules the AVX-512 path out, `portable` forces the portable path (for
/// comparing results or speed, or to rule a fast path out when hunting a bug). A value naming a
/// path the CPU cannot run, or no path, is ignored.
public enum KernelPath: String, Sendable, CustomStringConvertible {
    /// AVX-512 VNNI kernels (`vpdpbusd` on two blocks per register), from `FlywheelKernelsAVX512`.
    /// Quantization uses the AVX2 quantizer on this path.
    case avx512vnni
    /// Hand-vectorised x86-64 kernels (`vpmaddubsw`, `vpmaddwd`, `vfmadd`), from `FlywheelKernelsAVX2`.
    case avx2
    /// Plain Swift, correct on every CPU; the reference the fast paths are tested against.
    case portable

    public var description: String { rawValue }

    /// The name of the environment variable that can cap the path.
    public static let environmentVariable = "FLYWHEEL_KERNELS"

    /// Whether this CPU (and OS) can run the AVX2 path, whatever the environment says.
    public static let cpuSupportsAVX2: Bool = fw_cpu_supports_avx2_fma_f16c() != 0

    /// Whether this CPU (and OS) can run the AVX-512 VNNI path, whatever the environment says.
    public static let cpuSupportsAVX512VNNI: Bool = fw_cpu_supports_avx512_vnni() != 0

    /// The path this process uses, decided by the CPU and `FLYWHEEL_KERNELS`.
    public static let active: KernelPath = select(
        environment: getenv(environmentVariable).map { String(cString: $0) }, cpuSupportsAVX2: cpuSupportsAVX2,
        cpuSupportsAVX512VNNI: cpuSupportsAVX512VNNI)

    /// Whether the AVX2 quantizer (and, for `.avx2`, kernels) can run on this path.
    var hasAVX2: Bool { self != .portable }

    /// The path for a given environment value and CPU: pure, so tests can check the rule.
    /// `cpuSupportsAVX512VNNI` counts only together with `cpuSupportsAVX2`.
    public static func select(
        environment: String?, cpuSupportsAVX2: Bool, cpuSupportsAVX512VNNI: Bool = false
    ) -> KernelPath {
        #if arch(x86_64)
        let cap = environment.flatMap { KernelPath(rawValue: $0.lowercased()) }
        if cap == .portable || !cpuSupportsAVX2 { return .portable }
        if cap == .avx2 || !cpuSupportsAVX512VNNI { return .avx2 }
        return .avx512vnni
        #else
        return .portable
        #endif
    }
}
