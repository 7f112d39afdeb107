#define _GNU_SOURCE
#include <sched.h>
#include "CFlywheelKernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static int detect(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int fma = (ecx >> 12) & 1, osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1, f16c = (ecx >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    // The OS must save the YMM registers on context switch (XCR0 bits 1 and 2), or AVX state is lost.
    unsigned int xcr0_lo, xcr0_hi;
    __asm__ __volatile__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 6) != 6) return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (ebx >> 5) & 1;  // AVX2
}

static int detect_avx512_vnni(void) {
    if (!detect()) return 0;
    unsigned int eax, ebx, ecx, edx;
    // The OS must also save the opmask and both halves of the ZMM registers (XCR0 bits 5, 6, 7).
    unsigned int xcr0_lo, xcr0_hi;
    __asm__ __volatile__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0xE6) != 0xE6) return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const int f = (ebx >> 16) & 1, bw = (ebx >> 30) & 1, vl = (ebx >> 31) & 1, vnni = (ecx >> 11) & 1;
    return f && bw && vl && vnni;
}
#else
static int detect(void) { return 0; }
static int detect_avx512_vnni(void) { return 0; }
#endif

int fw_cpu_supports_avx2_fma_f16c(void) {
    // Racing first callers compute the same answer; an int store is atomic on every target we build for.
    static volatile int cached = -1;
    if (cached < 0) cached = detect();
    return cached;
}

int fw_cpu_supports_avx512_vnni(void) {
    static volatile int cached = -1;  // as above
    if (cached < 0) cached = detect_avx512_vnni();
    return cached;
}

int fw_affinity_cpu_count(void) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    return CPU_COUNT(&set);
#else
    return 0;
#endif
}
