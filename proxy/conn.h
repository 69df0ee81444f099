/*
 * conn.h — a client connection and the state machine that serves it:
 * read a request head, route it, forward head and body to an upstream
 * connection, stream the response back, then wait for the next request.
 */
#ifndef SL_CONN_H
#define SL_CONN_H

#include <sys/socket.h>

#include <event2/util.h>

struct sl_worker;
struct ssl_ctx_st;

/*
 * Take over accepted socket FD from ADDR on worker W. With TLS_CTX (a
 * TLS listener's context, from the current config) the connection starts
 * with a TLS handshake; its SSL takes its own reference on the context.
 * On failure the socket is closed.
 */
void sl_conn_accept(struct sl_worker *w, evutil_socket_t fd,
    const struct sockaddr *addr, int addrlen, struct ssl_ctx_st *tls_ctx);

/* Close connections idle between requests for GRACE_MS or more (drain). */
void sl_conn_close_idle(struct sl_worker *w, uint64_t grace_ms);

/* Close every connection of W now (end of drain). */
void sl_conn_close_all(struct sl_worker *w);

/* Free connections closed since the last call (worker's reap event). */
void sl_conn_reap(struct sl_worker *w);

#endif
