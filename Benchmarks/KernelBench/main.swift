// Throughput of the Q8_0 kernels and the compute pool's round trip on this machine.
//
//   swift run -c release --scratch-path .build-ker kernel-bench [cold-MiB] [quick | mul]
//
// `quick` skips the portable path and matMul; `mul` prints only the fast paths' matMul tokens/s
// (B=32 and B=64, 1 and 2 threads). Every fast path the CPU supports is measured (avx2, avx512).
//
// "Cold" streams a matrix much larger than the last-level cache (default 1024 MiB; this machine
// reports a 300 MiB L3), as decode does; "hot" repeats a 1536x576 matrix (SmolLM2-135M's FFN
// shape, 0.9 MiB) that stays in L2. GB/s counts weight bytes read. Everything runs inside
// functions: top-level variables of main.swift are globals and slow the kernels down.
import FlywheelKernels
import FlywheelKernelsAVX2
import FlywheelKernelsAVX512
#if canImport(Glibc)
import Glibc
#endif

KernelBench.main(arguments: CommandLine.arguments)
