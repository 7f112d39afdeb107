#ifndef FLYWHEEL_CLINUX_SHIM_H
#define FLYWHEEL_CLINUX_SHIM_H
// Linux/glibc headers that Swift's Glibc module does not cover.
#include <malloc.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

// Keep freed memory in glibc's arenas rather than trimming after every burst (which costs mprotect/madvise
// system calls per request on a busy server).
static inline void fw_tune_malloc(int trim_threshold, int top_pad) {
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
    mallopt(M_TOP_PAD, top_pad);
}

// Lowers the calling thread's CPU priority (Linux applies nice values per thread). Returns 0 or -1 (errno set).
static inline int fw_set_current_thread_nice(int nice_value) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice_value);
}
#endif
