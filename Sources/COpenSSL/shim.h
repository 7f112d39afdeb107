#ifndef FLYWHEEL_COPENSSL_SHIM_H
#define FLYWHEEL_COPENSSL_SHIM_H
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>

// TLS server helpers for FlywheelHTTP's TLS listener: OpenSSL spells these as macros, which Swift does not
// import, or needs a C callback.

/// TLS 1.2 minimum, no renegotiation, no compression, the server's cipher preference, an EOF without
/// close_notify read as a plain end of stream, partial writes into a moving buffer (the connection retries
/// from its output queue), record buffers released while idle, and no server-side session cache (up to 20,480
/// sessions otherwise, swept under a lock): resumption works through session tickets, which the client keeps.
static inline void fw_tls_server_defaults(SSL_CTX *ctx) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE
                                 | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                              | SSL_MODE_RELEASE_BUFFERS);
}

/// A passphrase-protected key fails to load instead of prompting on the terminal.
static int fw_tls_no_passphrase(char *buf, int size, int rwflag, void *userdata) {
    (void)buf; (void)size; (void)rwflag; (void)userdata;
    return 0;
}

static inline void fw_tls_refuse_passphrase_prompt(SSL_CTX *ctx) {
    SSL_CTX_set_default_passwd_cb(ctx, fw_tls_no_passphrase);
}

/// ALPN: "http/1.1" when the client offers it; a client offering only other protocols gets no ALPN answer
/// (and then speaks HTTP/1.1 or gives up).
static int fw_tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                              unsigned int inlen, void *arg) {
    static const unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    (void)ssl; (void)arg;
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, http11, sizeof(http11), in, inlen) == OPENSSL_NPN_NEGOTIATED) {
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static inline void fw_tls_select_http11(SSL_CTX *ctx) {
    SSL_CTX_set_alpn_select_cb(ctx, fw_tls_alpn_select, NULL);
}

/// Client side, for tests and tools: "http/1.1" offered by ALPN.
static inline int fw_tls_offer_http11(SSL *ssl) {
    static const unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    return SSL_set_alpn_protos(ssl, http11, sizeof(http11));
}

#endif
