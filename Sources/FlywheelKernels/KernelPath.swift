import CFlywheelKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which implementation `Kernels` and `Q8Block.quantize` use on this machine.
///
/// Chosen once per process, the first time a kernel runs: `avx2` when the CPU and OS support AVX2,
/// FMA and F16C, `portable` otherwise. Setting the environment variable `FLYWHEEL_KERNELS=portable`
/// before the process starts forces the portable path (for comparing results or speed, or to rule
/// the fast path out when hunting a bug). Any other value of the variable is ignored.
public enum KernelPath: String, Sendable, CustomStringConvertible {
    /// Hand-vectorised x86-64 kernels (`vpmaddubsw`, `vpmaddwd`, `vfmadd`), from `FlywheelKernelsAVX2`.
    case avx2
    /// Plain Swift, correct on every CPU; the reference the fast paths are tested against.
    case portable

    public var description: String { rawValue }

    /// The name of the environment variable that can force the portable path.
    public static let environmentVariable = "FLYWHEEL_KERNELS"

    /// Whether this CPU (and OS) can run the AVX2 path, whatever the environment says.
    public static let cpuSupportsAVX2: Bool = fw_cpu_supports_avx2_fma_f16c() != 0

    /// The path this process uses, decided by the CPU and `FLYWHEEL_KERNELS`.
    public static let active: KernelPath = select(
        environment: getenv(environmentVariable).map { String(cString: $0) }, cpuSupportsAVX2: cpuSupportsAVX2)

    /// The path for a given environment value and CPU: pure, so tests can check the rule.
    public static func select(environment: String?, cpuSupportsAVX2: Bool) -> KernelPath {
        #if arch(x86_64)
        if environment?.lowercased() == KernelPath.portable.rawValue { return .portable }
        return cpuSupportsAVX2 ? .avx2 : .portable
        #else
        return .portable
        #endif
    }
}
