/*
 * tls.h — TLS with OpenSSL 3: contexts for listeners (certificates chosen
 * by SNI, ALPN, session tickets with rotating keys, OCSP stapling) and for
 * origins (verification, SNI, client certificates).
 *
 * Contexts belong to the config they were built from: sl_tls_prepare
 * builds them into a struct sl_config, and sl_conf_free frees them with
 * it. A routing table owns its config, so a reload publishes new contexts
 * with the new table and the old ones go with the old table. SSL_CTX is
 * reference counted: every SSL holds its context, so a connection keeps
 * its certificate, SNI map and settings until it closes, whatever was
 * reloaded in the meantime.
 */
#ifndef SL_TLS_H
#define SL_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct sl_io;
struct ssl_st;
struct ssl_ctx_st;
struct sl_config;
struct sl_listener_conf;
struct sl_origin_tls_conf;
struct sl_route_server;

/*
 * Initialise OpenSSL and the session ticket keys (random, process-wide).
 * Once, at start-up, before any other function here. Returns 0 or -1.
 */
int sl_tls_init(void);

/*
 * Build every TLS context CONF needs: one per TLS listener (plus one per
 * [cert:] it serves) and one per version with tls = yes. On failure
 * nothing is kept and *ERRP lists every problem, one "file:line: message"
 * per line (heap, caller frees). Start-up, -t and reload (control
 * thread).
 */
int sl_tls_prepare(struct sl_config *conf, char **errp);

/* Certificates (listener defaults plus [cert:] entries) CONF loaded. */
size_t sl_tls_count_certs(const struct sl_config *conf);

/*
 * The context of the listener NAME in CONF (HINT: its index when the
 * listeners have not moved); NULL when it is not a TLS listener there.
 */
struct ssl_ctx_st *sl_tls_listener_ctx(
    const struct sl_config *conf, const char *name, size_t hint);

/*
 * New rotation of session ticket keys: the current key becomes the
 * previous one (tickets under it are still accepted, and renewed), the
 * oldest is forgotten. Control thread, every tls_ticket_rotation.
 */
void sl_tls_rotate_ticket_keys(void);

/* An SSL for a client connection accepted on a listener with context
 * CTX (for sl_io_start_tls). NULL on failure. */
struct ssl_st *sl_tls_accept_ssl(struct ssl_ctx_st *ctx);

/*
 * The TLS session a worker keeps per origin server to resume from: the
 * newest one the server gave, and the context it was made with (held,
 * so the pointer cannot be reused by a later context). A session is only
 * offered on a connection made with that very context: the same CA,
 * verification, client certificate and server name.
 */
struct sl_tls_session_cache {
	struct ssl_session_st *session;
	struct ssl_ctx_st *ctx;
};

/* Forget CACHE's session (and its context reference). */
void sl_tls_session_cache_clear(struct sl_tls_session_cache *cache);

/*
 * An SSL for a connection to origin SERVER with the settings T: SNI and
 * the name verified are T's tls_sni or the server's host. With CACHE
 * (else NULL) it offers the session kept there and keeps the sessions
 * the server gives on this connection. NULL on failure.
 */
struct ssl_st *sl_tls_origin_ssl(const struct sl_origin_tls_conf *t,
    const struct sl_route_server *srv, struct sl_tls_session_cache *cache);

/* Before freeing an origin connection's SSL that ends without sending
 * close_notify: keep its session resumable (OpenSSL marks a session
 * not resumable when its connection is freed unshut). */
void sl_tls_origin_closing(struct ssl_st *ssl);

/*
 * Client certificates (listeners with tls_client_ca): the header lines
 * sluice adds to each request of the client on IO, each ending in CRLF:
 * "X-Client-Cert-Verify: SUCCESS" with -Subject and -Issuer (RFC 4514
 * text) and -SHA256 (the certificate's fingerprint, lower-case hex) for a
 * verified certificate, or "X-Client-Cert-Verify: NONE" alone when the
 * client sent none (tls_verify_client = optional). Built at the first
 * request and kept with the connection. NULL for a connection whose
 * listener asks for no certificate (or a plain one).
 */
struct sl_tls_cert_headers {
	char *text;
	size_t len;
};
const struct sl_tls_cert_headers *sl_tls_client_cert_headers(
    const struct sl_io *io);

/* Did the failed handshake of client IO fail on its certificate: none
 * where one is required, or one that does not verify? */
bool sl_tls_client_cert_failed(const struct sl_io *io);

/* Did the handshake of TLS stream IO resume a session? */
bool sl_tls_resumed(const struct sl_io *io);

/*
 * Why the handshake of TLS stream IO failed, as text into BUF (SIZE
 * bytes): the certificate verification result when that failed, else
 * OpenSSL's reason. *PLAINTEXT is set when the peer spoke plain HTTP to a
 * TLS port: its first bytes were a request line's (a token method, then
 * a space), whatever the method. Returns 1 for a TLS failure (protocol or
 * certificate), 0 when the connection merely failed or closed (nothing
 * TLS-specific to report).
 */
int sl_tls_error(
    const struct sl_io *io, char *buf, size_t size, bool *plaintext);

/* Was the plain HTTP request of client IO (sl_tls_error's *PLAINTEXT) a
 * HEAD, whose answer has no body? */
bool sl_tls_plaintext_head(const struct sl_io *io);

/* The same for any SSL (NULL: none) whose newest error code is ERR. */
int sl_tls_describe(
    const struct ssl_st *ssl, unsigned long err, char *buf, size_t size);

#endif
