#ifndef FLYWHEEL_CCURL_SHIM_H
#define FLYWHEEL_CCURL_SHIM_H
#include <curl/curl.h>

// curl_easy_setopt / curl_easy_getinfo / curl_multi_setopt are variadic, which Swift cannot call.
// These typed wrappers are the only way the Swift side touches them.
static inline CURLcode fw_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode fw_easy_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode fw_easy_setopt_str(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode fw_easy_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode fw_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
typedef size_t (*fw_data_callback)(char *, size_t, size_t, void *);
static inline CURLcode fw_easy_setopt_datafn(CURL *h, CURLoption o, fw_data_callback f) { return curl_easy_setopt(h, o, f); }
typedef int (*fw_xferinfo_callback)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t);
static inline CURLcode fw_easy_setopt_xferinfo(CURL *h, fw_xferinfo_callback f) { return curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, f); }
static inline CURLcode fw_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode fw_easy_getinfo_double(CURL *h, CURLINFO i, double *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode fw_easy_getinfo_ptr(CURL *h, CURLINFO i, void **v) { return curl_easy_getinfo(h, i, v); }
static inline CURLMcode fw_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }
// curl_multi_socket_action mode: socket and timer callbacks, their userdata, per-socket data.
typedef int (*fw_socket_callback)(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
typedef int (*fw_timer_callback)(CURLM *multi, long timeout_ms, void *userp);
static inline CURLMcode fw_multi_setopt_ptr(CURLM *m, CURLMoption o, void *v) { return curl_multi_setopt(m, o, v); }
static inline CURLMcode fw_multi_setopt_socketfn(CURLM *m, fw_socket_callback f) { return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, f); }
static inline CURLMcode fw_multi_setopt_timerfn(CURLM *m, fw_timer_callback f) { return curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, f); }
static inline int fw_curl_poll_in(void) { return CURL_POLL_IN; }
static inline int fw_curl_poll_out(void) { return CURL_POLL_OUT; }
static inline int fw_curl_poll_remove(void) { return CURL_POLL_REMOVE; }
static inline int fw_curl_cselect_in(void) { return CURL_CSELECT_IN; }
static inline int fw_curl_cselect_out(void) { return CURL_CSELECT_OUT; }
static inline int fw_curl_cselect_err(void) { return CURL_CSELECT_ERR; }
static inline curl_socket_t fw_curl_socket_timeout(void) { return CURL_SOCKET_TIMEOUT; }
#endif
