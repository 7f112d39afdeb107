#ifndef FLYWHEEL_CLINUX_SHIM_H
#define FLYWHEEL_CLINUX_SHIM_H
// Linux/glibc entry points that Swift's Glibc module does not cover, as small typed C functions.
// Headers that Swift's Glibc module already covers (<sys/socket.h>, <stdlib.h>) are deliberately not included:
// declarations reached through this module too would no longer resolve in Swift files without `import CLinux`.
#include <malloc.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

// Keep freed memory in glibc's arenas rather than trimming after every burst (which costs mprotect/madvise
// system calls per request on a busy server).
static inline void fw_tune_malloc(int trim_threshold, int top_pad) {
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
    mallopt(M_TOP_PAD, top_pad);
}

// MARK: epoll
//
// `struct epoll_event` is packed on x86-64 (12 bytes, `data` at offset 4) and naturally aligned elsewhere.
// Swift never sees its layout: records are built and read here, in C, one field at a time.

static const uint32_t fw_epollin = EPOLLIN;
static const uint32_t fw_epollout = EPOLLOUT;
static const uint32_t fw_epollerr = EPOLLERR;
static const uint32_t fw_epollhup = EPOLLHUP;
static const uint32_t fw_epollrdhup = EPOLLRDHUP;
static const int fw_epoll_ctl_add = EPOLL_CTL_ADD;
static const int fw_epoll_ctl_mod = EPOLL_CTL_MOD;
static const int fw_epoll_ctl_del = EPOLL_CTL_DEL;

/// An array of `count` epoll records for `fw_epoll_wait`, or NULL when out of memory. Free with `fw_epoll_events_free`.
static inline struct epoll_event *fw_epoll_events_allocate(int count) {
    return (struct epoll_event *)calloc((size_t)count, sizeof(struct epoll_event));
}

static inline void fw_epoll_events_free(struct epoll_event *events) {
    free(events);
}

static inline int fw_epoll_create1(int flags) {
    return epoll_create1(flags);
}

/// `epoll_ctl` with the record's two fields as arguments (`data` is the 64-bit member of the union).
static inline int fw_epoll_ctl(int epfd, int operation, int fd, uint32_t events, uint64_t data) {
    struct epoll_event event;
    event.events = events;
    event.data.u64 = data;
    return epoll_ctl(epfd, operation, fd, &event);
}

static inline int fw_epoll_wait(int epfd, struct epoll_event *events, int capacity, int timeout_ms) {
    return epoll_wait(epfd, events, capacity, timeout_ms);
}

/// The readiness bits of record `index`.
static inline uint32_t fw_epoll_event_events(const struct epoll_event *events, int index) {
    return events[index].events;
}

/// The 64-bit token of record `index`.
static inline uint64_t fw_epoll_event_data(const struct epoll_event *events, int index) {
    return events[index].data.u64;
}

// MARK: eventfd

static const int fw_efd_cloexec = EFD_CLOEXEC;
static const int fw_efd_nonblock = EFD_NONBLOCK;

static inline int fw_eventfd(unsigned int initial_value, int flags) {
    return eventfd(initial_value, flags);
}

// MARK: accept4
//
// glibc declares accept4 only under _GNU_SOURCE, which Swift's Glibc module is not built with. Declared here
// with `struct sockaddr` left incomplete and socklen_t spelled as what it is on Linux (unsigned int), so that
// <sys/socket.h> need not be included (see above); glibc has exported accept4 since 2.10.
struct sockaddr;
extern int accept4(int fd, struct sockaddr *address, unsigned int *address_length, int flags);

static inline int fw_accept4(int fd, struct sockaddr *address, unsigned int *address_length, int flags) {
    return accept4(fd, address, address_length, flags);
}

#endif
