#ifndef FLYWHEEL_CLINUX_SHIM_H
#define FLYWHEEL_CLINUX_SHIM_H
// Linux/glibc headers that Swift's Glibc module does not cover.
#include <malloc.h>

// Keep freed memory in glibc's arenas rather than trimming after every burst (which costs mprotect/madvise
// system calls per request on a busy server).
static inline void fw_tune_malloc(int trim_threshold, int top_pad) {
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
    mallopt(M_TOP_PAD, top_pad);
}
#endif
