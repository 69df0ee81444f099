/*
 * upstream.h — connections to origin servers, pooled per worker and per
 * server for keep-alive reuse, and the choice of a server within a version.
 */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct bufferevent;
struct sl_conn;
struct sl_route_server;
struct sl_route_version;
struct sl_worker;

struct sl_upstream {
	struct bufferevent *bev;
	struct sl_worker *w;
	uint32_t server_id;
	uint32_t requests; /* requests sent on this connection so far */
	bool connected;
	TAILQ_ENTRY(sl_upstream) idle_link;
};

TAILQ_HEAD(sl_upstream_list, sl_upstream);

/* Per worker, per server: idle connections and load. */
struct sl_pool {
	struct sl_upstream_list idle;
	uint32_t nidle;
	uint32_t active; /* requests in flight from this worker */
};

/*
 * Pick a server of V: weighted, least-loaded of two random choices among
 * the servers that are ready. Returns NULL when none is available.
 */
const struct sl_route_server *sl_upstream_pick(
    struct sl_worker *w, const struct sl_route_version *v);

/*
 * Get a connection to SRV: an idle pooled one (*REUSED = true) or a new
 * connecting one. The caller sets the callbacks. NULL on resource failure.
 */
struct sl_upstream *sl_upstream_get(struct sl_worker *w,
    const struct sl_route_server *srv, uint32_t connect_timeout_ms,
    bool *reused);

/*
 * Give a connection back after a request. With REUSABLE it goes to the
 * idle pool (if there is room), otherwise it is closed. Takes ownership.
 */
void sl_upstream_release(struct sl_upstream *up, bool reusable,
    uint32_t max_idle, uint32_t idle_timeout_ms);

/* Close a connection now (never reused). Takes ownership. */
void sl_upstream_free(struct sl_upstream *up);

/* Make sure W has pools for every server id below N (worker thread). */
int sl_upstream_pools_grow(struct sl_worker *w, uint32_t n);

/* Close every idle connection of W (stop). */
void sl_upstream_close_idle(struct sl_worker *w);

#endif
