/*
 * upstream.h — connections to origin servers, pooled per worker and per
 * server for keep-alive reuse, and the choice of a server within a version.
 */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "conf/log.h"
#include "proxy/http1.h"
#include "proxy/io.h"
#include "proxy/tls.h"

struct sl_conn;
struct sl_route_server;
struct sl_route_version;
struct sl_worker;
struct sl_service_conf;
struct sl_origin_tls_conf;
struct ssl_ctx_st;

struct sl_upstream {
	struct sl_io io;
	struct sl_worker *w;
	/* The origin TLS context it was made with (NULL: plain HTTP); only
	 * a request wanting the same context reuses it. Its SSL holds a
	 * reference, so the pointer stays unique while the connection
	 * lives. */
	const struct ssl_ctx_st *tls_ctx;
	uint32_t server_id;
	uint32_t requests; /* requests sent on this connection so far */
	bool connected;
	llhttp_t resp_parser; /* the response in progress on it */
	llhttp_t req_parser;  /* the request body being sent on it */
	/* Their current chunks' extension bytes (sl_http_forward_body). */
	uint32_t resp_ext, req_ext;
	TAILQ_ENTRY(sl_upstream) idle_link;
};

TAILQ_HEAD(sl_upstream_list, sl_upstream);

/* Per worker, per server: idle connections, load, and passive health. */
#define SL_POOL_FAIL_KINDS 6

struct sl_pool {
	struct sl_upstream_list idle;
	uint32_t nidle;
	uint32_t active;          /* requests in flight from this worker */
	uint32_t consec_failures; /* failed attempts in a row */
	uint32_t ejections;       /* times ejected, for the growing penalty */
	uint64_t ejected_until;   /* monotonic ms; read by the control thread */
	uint32_t ejected_total; /* ejections ever; read by the control thread */
	uint8_t eject_reason;   /* enum sl_eject_reason of the last ejection */
	struct sl_tls_session_cache tls; /* to resume TLS to this server */
	/* Its failures' warnings, one limit per kind (conn.c's up_fail). */
	struct sl_log_limit fail_log[SL_POOL_FAIL_KINDS];
};

/* Why an attempt on a server failed (passive outlier detection). */
enum sl_eject_reason {
	SL_EJECT_NONE = 0,
	SL_EJECT_CONNECT, /* connect refused or timed out */
	SL_EJECT_RESET,   /* closed or reset before the response */
	SL_EJECT_TIMEOUT, /* response timeout */
	SL_EJECT_5XX,     /* 5xx responses */
};

/* Names of enum sl_eject_reason, for show service. */
extern const char *const sl_eject_reason_names[];

/*
 * How long a server is ejected the (EJECTIONS+1)th time in a row:
 * eject_time, doubled with each repeat, up to SL_EJECT_DOUBLED_MAX_MS (or
 * eject_time itself when that is longer: a configured time is never cut).
 */
#define SL_EJECT_DOUBLED_MAX_MS 300000u
uint64_t sl_eject_penalty(uint32_t eject_time_ms, uint32_t ejections);

/*
 * Report the outcome of an attempt on SRV of version V (service settings
 * SC): a failure counts toward ejection, a success clears the count. NOW
 * is monotonic ms. Returns true when this failure ejected the server.
 */
bool sl_upstream_report(struct sl_worker *w, const struct sl_route_version *v,
    const struct sl_route_server *srv, const struct sl_service_conf *sc,
    enum sl_eject_reason failure, uint64_t now);

/*
 * Pick a server of V: weighted, least-loaded of two random choices among
 * the servers that are ready, healthy and not ejected at NOW (monotonic
 * ms), other than EXCLUDE_ID. Returns NULL when none is available.
 */
const struct sl_route_server *sl_upstream_pick(struct sl_worker *w,
    const struct sl_route_version *v, uint64_t now, uint32_t exclude_id);

#define SL_NO_SERVER UINT32_MAX /* exclude_id that excludes nothing */

/*
 * Get a connection to SRV: an idle pooled one (*REUSED = true) or a new
 * connecting one, over TLS with settings TLS (NULL: plain HTTP; a pooled
 * connection is reused only when made with the same TLS context). For
 * TLS the connect timeout covers the handshake too. CHECK_ALIVE: take a
 * pooled one only after a peek says it is still open (for requests that
 * cannot be sent twice). The caller sets the callbacks. NULL on resource
 * failure.
 */
struct sl_upstream *sl_upstream_get(struct sl_worker *w,
    const struct sl_route_server *srv, const struct sl_origin_tls_conf *tls,
    uint32_t connect_timeout_ms, bool check_alive, bool *reused);

/*
 * Give a connection back after a request. With REUSABLE it goes to the
 * idle pool (if there is room), otherwise it is closed. Takes ownership.
 */
void sl_upstream_release(struct sl_upstream *up, bool reusable,
    uint32_t max_idle, uint32_t idle_timeout_ms);

/* Close a connection now (never reused). Takes ownership. */
void sl_upstream_free(struct sl_upstream *up);

/* Allocate W's pools for every server id below N (control thread, before
 * publishing a table that names them). */
void sl_upstream_pools_prepare(struct sl_worker *w, uint32_t n);

/* Close every idle connection of W (stop). */
void sl_upstream_close_idle(struct sl_worker *w);

#endif
