#ifndef FLYWHEEL_CKERNELS_H
#define FLYWHEEL_CKERNELS_H
// The few CPU services the kernels and the compute pool need that Swift cannot reach by itself:
// feature detection, the spin-wait hint and software prefetch.

// 1 if the CPU and the operating system support AVX2, FMA and F16C (the features the
// FlywheelKernelsAVX2 target is compiled for), 0 otherwise. Cheap after the first call.
int fw_cpu_supports_avx2_fma_f16c(void);

// 1 if, on top of that, the CPU supports AVX-512 F, BW, VL and VNNI and the operating system saves
// the ZMM and opmask registers (the features FlywheelKernelsAVX512 is compiled for), 0 otherwise.
int fw_cpu_supports_avx512_vnni(void);

// The number of CPUs in this thread's scheduler affinity mask (Linux), or 0 if unknown.
int fw_affinity_cpu_count(void);

// The spin-wait hint (`pause` on x86): lets the sibling hyperthread run and saves power while a
// thread waits on an atomic. `_mm_pause` itself does not link from Swift.
static inline void fw_cpu_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// Asks for the cache line at `address` to be brought in for reading; never faults.
static inline void fw_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
