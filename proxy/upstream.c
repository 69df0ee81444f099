/*
 * upstream.c — origin connections: per-worker keep-alive pools and the
 * least-loaded-of-two server choice.
 *
 * An idle pooled connection has its own callbacks: any byte or EOF from the
 * origin while idle means the connection is no longer usable, so it is
 * closed at once instead of being handed to the next request.
 *
 * TLS origin connections (proxy/tls.c) are pooled the same way, keyed by
 * server and TLS context: a pooled connection serves only requests whose
 * version has the very context it was made with.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf/log.h"
#include "conf/xmalloc.h"
#include "conf/conf.h"
#include "proxy/route.h"
#include "proxy/tls.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

/* Allocate W's pools for server ids below N (control thread, before the
 * table naming them is published). */
void
sl_upstream_pools_prepare(struct sl_worker *w, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n && i < SL_MAX_SERVER_IDS; i++) {
		if (w->pools[i] != NULL)
			continue;
		w->pools[i] = sl_xcalloc(1, sizeof *w->pools[i]);
		TAILQ_INIT(&w->pools[i]->idle);
	}
}

/* A server's load relative to its weight: compare a/wa with b/wb. */
static bool
less_loaded(struct sl_worker *w, const struct sl_route_server *a,
    const struct sl_route_server *b)
{
	uint64_t la = (uint64_t)w->pools[a->id]->active * b->weight;
	uint64_t lb = (uint64_t)w->pools[b->id]->active * a->weight;

	return la <= lb;
}

/* A weighted random server index of V. */
static size_t
weighted_index(struct sl_worker *w, const struct sl_route_version *v)
{
	uint64_t r;
	size_t i;

	if (v->total_server_weight == v->nservers * v->servers[0].weight)
		return (size_t)(sl_rand64(&w->rng) % v->nservers);
	r = sl_rand64(&w->rng) % v->total_server_weight;
	for (i = 0; i < v->nservers; i++) {
		if (r < v->servers[i].weight)
			return i;
		r -= v->servers[i].weight;
	}
	return v->nservers - 1;
}

const char *const sl_eject_reason_names[] = {
    "", "connect failures", "resets", "timeouts", "5xx responses"};

/* Can S take a new request: ready, healthy, not excluded, and not ejected
 * (unless EJECTED_OK)? */
static bool
available(struct sl_worker *w, const struct sl_route_server *s, uint64_t now,
    uint32_t exclude_id, bool ejected_ok)
{
	return s->state == SL_SERVER_READY && s->healthy &&
	    s->id != exclude_id &&
	    (ejected_ok || w->pools[s->id]->ejected_until <= now);
}

/* First available server at or after index I (wrapping), or NULL. */
static const struct sl_route_server *
ready_from(struct sl_worker *w, const struct sl_route_version *v, size_t i,
    uint64_t now, uint32_t exclude_id, bool ejected_ok)
{
	size_t k;

	for (k = 0; k < v->nservers; k++) {
		const struct sl_route_server *s =
		    &v->servers[(i + k) % v->nservers];

		if (available(w, s, now, exclude_id, ejected_ok))
			return s;
	}
	return NULL;
}

/*
 * Least-loaded of two weighted random choices among available servers.
 * Ejection never empties a version (unless eject_max is 100%): eject_max
 * caps what a version's own failures eject, but a server shared with
 * another service or version may have been ejected by that one's
 * failures, so when every server left is ejected, they are used. Not when
 * a live one is only excluded (a retry's failed server): a retry never
 * goes to an ejected server.
 */
const struct sl_route_server *
sl_upstream_pick(struct sl_worker *w, const struct sl_route_version *v,
    uint64_t now, uint32_t exclude_id)
{
	const struct sl_route_server *a, *b;
	bool ejected_ok = false;

	if (v->nservers == 0)
		return NULL;
	a = ready_from(w, v, weighted_index(w, v), now, exclude_id, false);
	if (a == NULL && !v->may_eject_all &&
	    (exclude_id == SL_NO_SERVER ||
	        ready_from(w, v, 0, now, SL_NO_SERVER, false) == NULL)) {
		ejected_ok = true;
		a = ready_from(
		    w, v, weighted_index(w, v), now, exclude_id, true);
	}
	if (a == NULL || v->nservers == 1)
		return a;
	b = ready_from(w, v, weighted_index(w, v), now, exclude_id, ejected_ok);
	if (b == NULL || b == a)
		return a;
	return less_loaded(w, a, b) ? a : b;
}

/* Servers of V this worker has ejected right now. */
static size_t
ejected_count(
    struct sl_worker *w, const struct sl_route_version *v, uint64_t now)
{
	size_t i, n = 0;

	for (i = 0; i < v->nservers; i++)
		n += w->pools[v->servers[i].id]->ejected_until > now;
	return n;
}

/* Count an ejection, with a debug line (out of line: the report of every
 * success stays short). */
static __attribute__((noinline, cold)) void
note_ejection(struct sl_worker *w, const struct sl_route_version *v,
    const struct sl_route_server *srv, const struct sl_service_conf *sc,
    uint64_t penalty)
{
	const struct sl_pool *p = w->pools[srv->id];

	SL_STAT_INC(w->wstats.upstream_ejections);
	/* The control thread's event ("outlier: ... ejected") says it at
	 * the default level, once; this is the worker's detail. */
	sl_log_debug("worker %u: %s/%s server %s ejected for %llu ms: %s (%u "
	             "in a row; ejection %u)",
	    w->id, sc->name, v->name, srv->addr.text,
	    (unsigned long long)penalty, sl_eject_reason_names[p->eject_reason],
	    p->consec_failures, p->ejections);
}

uint64_t
sl_eject_penalty(uint32_t eject_time_ms, uint32_t ejections)
{
	uint64_t most = eject_time_ms > SL_EJECT_DOUBLED_MAX_MS
	    ? eject_time_ms
	    : SL_EJECT_DOUBLED_MAX_MS;
	uint64_t penalty = (uint64_t)eject_time_ms
	    << (ejections < 5 ? ejections : 5);

	return penalty < most ? penalty : most;
}

/* An attempt's outcome, for passive outlier ejection. */
bool
sl_upstream_report(struct sl_worker *w, const struct sl_route_version *v,
    const struct sl_route_server *srv, const struct sl_service_conf *sc,
    enum sl_eject_reason failure, uint64_t now)
{
	struct sl_pool *p = w->pools[srv->id];
	uint64_t penalty;
	size_t cap;

	if (failure == SL_EJECT_NONE) {
		/* A success well after the last ejection forgives it. */
		if (p->ejections > 0 &&
		    now > p->ejected_until + (uint64_t)sc->eject_time_ms)
			p->ejections = 0;
		p->consec_failures = 0;
		return false;
	}
	if (++p->consec_failures < sc->eject_after || sc->eject_after == 0)
		return false;
	/* Never eject more than eject_max of the version's servers. */
	cap = v->nservers * sc->eject_max_pct / 100;
	if (ejected_count(w, v, now) >= cap)
		return false;
	penalty = sl_eject_penalty(sc->eject_time_ms, p->ejections);
	/* The reason first: a reader that sees this ejected_until (acquire)
	 * sees its reason, not the last ejection's. */
	__atomic_store_n(&p->eject_reason, (uint8_t)failure, __ATOMIC_RELAXED);
	__atomic_store_n(&p->ejected_until, now + penalty, __ATOMIC_RELEASE);
	p->ejections++;
	__atomic_store_n(
	    &p->ejected_total, p->ejected_total + 1, __ATOMIC_RELAXED);
	note_ejection(w, v, srv, sc, penalty);
	p->consec_failures = 0;
	return true;
}

/* An idle connection heard from its origin: it can't be reused. */
static void
idle_read_cb(struct sl_io *io, void *arg)
{
	struct sl_upstream *up = arg;

	sl_log_debug(
	    "upstream %u: unexpected data on idle connection", up->server_id);
	TAILQ_REMOVE(&up->w->pools[up->server_id]->idle, up, idle_link);
	up->w->pools[up->server_id]->nidle--;
	sl_upstream_free(up);
}

static void
idle_event_cb(struct sl_io *io, short what, void *arg)
{
	idle_read_cb(io, arg);
}

/* Get a pooled connection to SRV, or start a new one. CHECK_ALIVE: a
 * request that could not be sent again if the pooled connection turned
 * out closed (not idempotent, or with a body) takes one only after a
 * peek says it is open, at the cost of a system call. */
struct sl_upstream *
sl_upstream_get(struct sl_worker *w, const struct sl_route_server *srv,
    const struct sl_origin_tls_conf *tls, uint32_t connect_timeout_ms,
    bool check_alive, bool *reused)
{
	struct sl_pool *pool = w->pools[srv->id];
	const struct ssl_ctx_st *ctx = tls != NULL ? tls->ctx : NULL;
	struct sl_upstream *up, *next;

	if (tls != NULL && ctx == NULL)
		return NULL; /* never fall back to plain HTTP */
	for (up = TAILQ_FIRST(&pool->idle); up != NULL; up = next) {
		next = TAILQ_NEXT(up, idle_link);
		if (up->tls_ctx != ctx)
			continue;
		/* Its read event notices a close while it idles, but an
		 * origin's reset that came with the last response's end makes
		 * no event of its own (edge-triggered reads; libevent reports
		 * EPOLLHUP without EV_CLOSED): it can sit here dead. */
		if (!check_alive || sl_io_idle_open(&up->io))
			break;
		TAILQ_REMOVE(&pool->idle, up, idle_link);
		pool->nidle--;
		SL_STAT_INC(w->wstats.upstream_idle_dead);
		sl_upstream_free(up);
	}
	if (up != NULL) {
		TAILQ_REMOVE(&pool->idle, up, idle_link);
		pool->nidle--;
		sl_io_set_timeouts(&up->io, 0, 0);
		*reused = true;
		SL_STAT_INC(w->wstats.upstream_reused);
		return up;
	}
	*reused = false;
	up = calloc(1, sizeof *up);
	if (up == NULL)
		return NULL;
	up->w = w;
	up->server_id = srv->id;
	sl_http_parser_init(&up->resp_parser, true);
	up->tls_ctx = ctx;
	if (sl_io_init_socket(&up->io, &w->io_loop, -1) != 0) {
		free(up);
		return NULL;
	}
	if (tls != NULL &&
	    sl_io_start_tls(
	        &up->io, sl_tls_origin_ssl(tls, srv, &pool->tls), false) != 0) {
		sl_io_free(&up->io);
		free(up);
		return NULL;
	}
	/* The write timeout covers the connect; a TLS handshake mostly
	 * waits to read, so it gets both. */
	sl_io_set_timeouts(
	    &up->io, tls != NULL ? connect_timeout_ms : 0, connect_timeout_ms);
	if (sl_io_connect(&up->io, (const struct sockaddr *)&srv->addr.ss,
	        (int)srv->addr.len) != 0) {
		/* Immediate failure (e.g. no fds): the caller answers 502. */
		sl_io_free(&up->io);
		free(up);
		return NULL;
	}
	SL_STAT_INC(w->wstats.upstream_opened);
	return up;
}

/* Return a connection to its pool, or close it. */
void
sl_upstream_release(struct sl_upstream *up, bool reusable, uint32_t max_idle,
    uint32_t idle_timeout_ms)
{
	struct sl_pool *pool = up->w->pools[up->server_id];

	if (!reusable || pool->nidle >= max_idle || up->w->stopping ||
	    evbuffer_get_length(sl_io_input(&up->io)) > 0 ||
	    sl_io_unsent(&up->io) > 0) {
		sl_upstream_free(up);
		return;
	}
	sl_io_setcb(&up->io, idle_read_cb, NULL, idle_event_cb, up);
	sl_io_set_write_low(&up->io, 0);
	sl_io_set_timeouts(&up->io, idle_timeout_ms, 0);
	sl_io_enable_read(&up->io);
	TAILQ_INSERT_HEAD(&pool->idle, up, idle_link);
	pool->nidle++;
}

/* Close a connection. */
void
sl_upstream_free(struct sl_upstream *up)
{
	if (up == NULL)
		return;
	sl_tls_origin_closing(sl_io_ssl(&up->io));
	sl_io_free(&up->io);
	free(up);
}

/* Close every idle connection of W. */
void
sl_upstream_close_idle(struct sl_worker *w)
{
	uint32_t i;
	struct sl_upstream *up;

	for (i = 0; i < SL_MAX_SERVER_IDS && w->pools[i] != NULL; i++) {
		while ((up = TAILQ_FIRST(&w->pools[i]->idle)) != NULL) {
			TAILQ_REMOVE(&w->pools[i]->idle, up, idle_link);
			w->pools[i]->nidle--;
			sl_upstream_free(up);
		}
	}
}
