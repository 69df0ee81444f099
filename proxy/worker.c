/*
 * worker.c — worker threads: event loops, listeners, table epochs, stop.
 *
 * Routing-table lifetime: a request holds the table it started with. Each
 * worker publishes min_epoch, the oldest epoch it still holds (including
 * the newest table it has seen); the control thread frees a retired table
 * once every worker's min_epoch is past it. Holding and releasing touch
 * only worker-local data; the one shared word is a relaxed/release store.
 * A worker moves to the newest table at its next request, and once a
 * second besides (epoch_cb), so that one without traffic does not keep
 * every table a string of reloads retired.
 *
 * TLS listeners: the context is looked up, per accepted connection, in
 * the config of the current table (by listener name), so a reload with
 * new certificates applies to the next handshake; the connection's SSL
 * keeps its own reference to the context it started with.
 */
#include "config.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "conf/conf.h"
#include "conf/log.h"
#include "conf/xmalloc.h"
#include "proxy/conn.h"
#include "proxy/http1.h"
#include "proxy/mem.h"
#include "proxy/route.h"
#include "proxy/tls.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

/* While draining, keep-alive connections idle this long are closed; busy
 * ones get "Connection: close" on their next response instead. */
#define SL_DRAIN_IDLE_GRACE_MS 1000

struct sl_listener_arg {
	struct sl_worker *w;
	bool tls;
	size_t index;               /* in the config it was bound from */
	char name[SL_MAX_NAME + 1]; /* listener name, to find its context */
	/* What it was bound to, as written: a reload that moves it names
	 * both (the config it came from is freed after a reload). */
	struct sockaddr_storage bind;
	char *bind_text;
};

/* Recompute and publish the oldest epoch this worker holds. */
static void
publish_min_epoch(struct sl_worker *w)
{
	uint64_t min = w->table != NULL ? w->table->epoch : UINT64_MAX;
	size_t i;

	for (i = 0; i < w->nheld; i++) {
		if (w->held[i].table->epoch < min)
			min = w->held[i].table->epoch;
	}
	__atomic_store_n(&w->min_epoch, min, __ATOMIC_RELEASE);
}

/* Switch the worker to the newest published table; returns it. */
struct sl_route_table *
sl_worker_current_table(struct sl_worker *w)
{
	struct sl_route_table *t = sl_route_current();

	if (t != w->table) {
		w->table = t;
		publish_min_epoch(w);
	}
	return t;
}

/* Room for twice as many held tables (more than SL_MAX_HELD_TABLES in
 * flight: as many publishes, each outlived by a long request). */
static bool
grow_held(struct sl_worker *w)
{
	size_t cap = w->held_cap * 2;
	struct sl_held_table *h = malloc(cap * sizeof *h);

	if (h == NULL)
		return false;
	memcpy(h, w->held, w->nheld * sizeof *h);
	if (w->held != w->held_inline)
		free(w->held);
	w->held = h;
	w->held_cap = cap;
	return true;
}

/* The table for a new request; switches to a newer one if published. */
struct sl_route_table *
sl_worker_hold_table(struct sl_worker *w)
{
	struct sl_route_table *t = sl_worker_current_table(w);
	size_t i;

	for (i = 0; i < w->nheld; i++) {
		if (w->held[i].table == t) {
			w->held[i].refs++;
			return t;
		}
	}
	if (w->nheld == w->held_cap && !grow_held(w)) {
		/* Out of memory with every slot taken: the request shares
		 * the newest table held. Never one that is not held: once
		 * w->table moves on, nothing would keep it from reclaim. */
		size_t newest = 0;

		for (i = 1; i < w->nheld; i++) {
			if (w->held[i].table->epoch >
			    w->held[newest].table->epoch)
				newest = i;
		}
		w->held[newest].refs++;
		return w->held[newest].table;
	}
	w->held[w->nheld].table = t;
	w->held[w->nheld].refs = 1;
	w->nheld++;
	return t;
}

/* A request is done with table T. */
void
sl_worker_release_table(struct sl_worker *w, struct sl_route_table *t)
{
	size_t i;

	for (i = 0; i < w->nheld; i++) {
		if (w->held[i].table != t)
			continue;
		if (--w->held[i].refs == 0) {
			w->held[i] = w->held[--w->nheld];
			if (t != w->table)
				publish_min_epoch(w);
		}
		return;
	}
}

/*
 * Client connections of the whole process, every worker's, against
 * max_connections (the current config's: a reload changes it): one
 * atomic add as a connection opens, one as it closes; none per request.
 * A worker that finds the process at the limit after an accept stops
 * accepting (the kernel's backlog holds the rest) and wakes the others
 * through their limit_fd to do the same; a paused worker looks again
 * every LIMIT_CHECK_MS, or at once when one of its connections closes.
 * Only workers accepting at the very same moment may take one more each.
 */
static uint32_t conns_open;
static struct sl_worker **all_workers; /* to wake them at the limit */
static unsigned nall_workers;
#define LIMIT_CHECK_MS 20

static bool
at_limit(struct sl_worker *w)
{
	return __atomic_load_n(&conns_open, __ATOMIC_RELAXED) >=
	    sl_worker_current_table(w)->conf->global.max_connections;
}

/* Accept or not, as the limit and the descriptors allow. */
static void
listen_as_allowed(struct sl_worker *w)
{
	bool on = !w->accept_paused && !w->accept_starved && !w->stopping;
	size_t i;

	for (i = 0; i < w->nlisteners; i++) {
		if (on)
			evconnlistener_enable(w->listeners[i]);
		else
			evconnlistener_disable(w->listeners[i]);
	}
}

/* Stop accepting while the process is at the limit. */
static bool
pause_accept(struct sl_worker *w)
{
	struct timeval tv = {0, LIMIT_CHECK_MS * 1000};

	if (w->accept_paused || w->stopping || !at_limit(w))
		return false;
	w->accept_paused = true;
	listen_as_allowed(w);
	event_add(w->limit_ev, &tv);
	return true;
}

/* Another worker found the process at the limit. */
static void
limit_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t count;

	if (read(fd, &count, sizeof count) == (ssize_t)sizeof count)
		(void)pause_accept(arg);
}

/* Accept again once the process is below the connection limit. */
static void
resume_accept(struct sl_worker *w)
{
	if (!w->accept_paused || w->stopping || at_limit(w))
		return;
	w->accept_paused = false;
	event_del(w->limit_ev);
	listen_as_allowed(w);
}

static void
limit_cb(evutil_socket_t fd, short what, void *arg)
{
	resume_accept(arg);
}

void
sl_worker_conn_opened(struct sl_worker *w)
{
	(void)w;
	__atomic_add_fetch(&conns_open, 1, __ATOMIC_RELAXED);
}

void
sl_worker_conn_closed(struct sl_worker *w)
{
	__atomic_sub_fetch(&conns_open, 1, __ATOMIC_RELAXED);
	resume_accept(w);
}

/*
 * Hand an accepted socket to a new connection: with the listener's TLS
 * context from the current config when it is a TLS listener (never as
 * plain HTTP: without a context the socket is closed).
 */
static void
accept_one(struct sl_worker *w, const struct sl_listener_arg *la,
    evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
	struct sl_route_table *t;
	struct ssl_ctx_st *ctx;

	if (!la->tls) {
		sl_conn_accept(w, fd, sa, salen, NULL);
		return;
	}
	t = sl_worker_hold_table(w);
	ctx = sl_tls_listener_ctx(t->conf, la->name, la->index);
	if (ctx != NULL)
		sl_conn_accept(w, fd, sa, salen, ctx);
	else {
		BUG_ON(ctx == NULL);
		evutil_closesocket(fd);
	}
	sl_worker_release_table(w, t);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct sl_listener_arg *la = arg;
	struct sl_worker *w = la->w;
	size_t i;

	accept_one(w, la, fd, sa, salen);
	if (pause_accept(w)) {
		uint64_t one = 1;

		SL_STAT_INC(w->wstats.conn_limit);
		sl_log_limited(&w->limit_log, 0,
		    "max_connections (%u) reached, pausing accept",
		    sl_worker_current_table(w)->conf->global.max_connections);
		for (i = 0; i < nall_workers; i++) {
			if (all_workers[i] != w &&
			    write(all_workers[i]->limit_fd, &one, sizeof one) <
			        0)
				sl_log(SL_LOG_WARN, errno,
				    "worker %zu: cannot signal the limit", i);
		}
	}
}

/* Once a second: an idle worker lets go of retired tables too. */
static void
epoch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_worker *w = arg;

	(void)sl_worker_current_table(w);
	if (w->alog.len > 0)
		sl_worker_alog_flush(w); /* at most a second behind */
}

void
sl_worker_alog_flush(struct sl_worker *w)
{
	uint32_t lost = sl_alog_flush(&w->alog);

	if (lost > 0)
		SL_STAT_ADD(w->wstats.access_log_dropped, lost);
}

bool
sl_accept_starved(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM;
}

/* The pause after a failed accept is over. */
static void
starve_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_worker *w = arg;

	w->accept_starved = false;
	listen_as_allowed(w);
}

/*
 * accept failed (libevent retries EAGAIN, EINTR and ECONNABORTED itself):
 * EMFILE, ENFILE, ENOBUFS, ENOMEM. The connection stays in the kernel's
 * backlog, so the listener would wake at once and fail again, a spin:
 * this worker stops accepting for 100 ms (a closing connection frees a
 * descriptor meanwhile), counts it, and logs at most once in 10 s.
 */
static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct sl_listener_arg *la = arg;
	struct sl_worker *w = la->w;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval pause = {0, 100 * 1000};

	/* A connection's own error (EPROTO, ENETDOWN, EPERM from a
	 * firewall...): that one is gone, the next may be fine. */
	if (!sl_accept_starved(err)) {
		sl_log(SL_LOG_WARN, err, "worker %u: accept failed", w->id);
		return;
	}
	SL_STAT_INC(w->wstats.accept_failures);
	sl_log_limited(&w->accept_log, err,
	    "worker %u: accept failed; accepting pauses for 100 ms each time",
	    w->id);
	if (!w->accept_starved && !w->stopping) {
		w->accept_starved = true;
		listen_as_allowed(w);
		event_add(w->starve_ev, &pause);
	}
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	sl_conn_reap(arg);
}

/* Periodic check while draining: leave the loop when nothing is left. */
static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_worker *w = arg;

	sl_conn_close_idle(w, SL_DRAIN_IDLE_GRACE_MS);
	if (w->nconns == 0)
		event_base_loopbreak(w->base);
}

/* An eventfd count at or above this means "leave the loop now". */
#define SL_WORKER_FORCE 1000000

/* Stop accepting; close idle connections; let the rest finish. */
static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_worker *w = arg;
	struct timeval tv = {0, 100 * 1000};
	uint64_t count;
	size_t i;

	if (read(fd, &count, sizeof count) != (ssize_t)sizeof count)
		return; /* spurious wake-up: nothing was written */
	if (count >= SL_WORKER_FORCE) {
		event_base_loopbreak(w->base);
		return;
	}
	if (w->stopping)
		return;
	w->stopping = true;
	for (i = 0; i < w->nlisteners; i++) {
		evutil_socket_t lfd = evconnlistener_get_fd(w->listeners[i]);
		struct sockaddr_storage ss;
		socklen_t len;
		int cfd;

		/* Closing a SO_REUSEPORT socket resets the connections in its
		 * accept queue: take them first, they are served normally. */
		evconnlistener_disable(w->listeners[i]);
		for (;;) {
			len = sizeof ss;
			cfd = accept4(lfd, (struct sockaddr *)&ss, &len,
			    SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (cfd < 0)
				break;
			accept_one(w, &w->listener_args[i], cfd,
			    (struct sockaddr *)&ss, (int)len);
		}
		evconnlistener_free(w->listeners[i]);
	}
	w->nlisteners = 0;
	sl_upstream_close_idle(w);
	sl_conn_close_idle(w, SL_DRAIN_IDLE_GRACE_MS);
	if (w->nconns == 0) {
		event_base_loopbreak(w->base);
		return;
	}
	w->drain_ev = event_new(w->base, -1, EV_PERSIST, drain_cb, w);
	if (w->drain_ev != NULL)
		event_add(w->drain_ev, &tv);
}

static void *
worker_main(void *arg)
{
	struct sl_worker *w = arg;

	event_base_dispatch(w->base);
	/* Free this thread's cached blocks. (The connections that
	 * sl_workers_free closes later go to the main thread's cache.) */
	sl_mem_thread_end();
	return NULL;
}

/* Can ADDR be bound without SO_REUSEPORT? 0, or the bind's errno. */
static int
probe_bind(const struct sl_addr *addr)
{
	int fd, one = 1, err = 0;

	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0; /* the real bind will say why */
	/* SO_REUSEADDR, as the listeners have it: connections a sluice
	 * that just stopped left in TIME_WAIT do not count. */
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0)
		err = errno;
	close(fd);
	return err;
}

/* Is every address CONF listens on (listeners, admin) free? See
 * worker.h. */
int
sl_workers_check_binds(const struct sl_config *conf, char **errp)
{
	static const char hint[] = "address already in use (to replace a "
	                           "running sluice, start with --takeover)";

	for (size_t i = 0; i < conf->nlisteners; i++) {
		const struct sl_listener_conf *lc = &conf->listeners[i];

		if (probe_bind(&lc->bind) == EADDRINUSE) {
			*errp = sl_xasprintf(
			    "%s: [listener:%s]: cannot listen on %s: %s",
			    conf->path, lc->name, lc->bind.text, hint);
			return -1;
		}
	}
	if (conf->global.has_admin &&
	    probe_bind(&conf->global.admin) == EADDRINUSE) {
		*errp = sl_xasprintf("%s: admin %s: cannot listen: %s",
		    conf->path, conf->global.admin.text, hint);
		return -1;
	}
	return 0;
}

/* Create the workers and bind their listeners. */
struct sl_worker **
sl_workers_create(const struct sl_config *conf, unsigned nworkers, char **errp)
{
	static const struct timeval one_second = {1, 0};
	struct sl_worker **ws;
	unsigned i;
	size_t j;
	uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

	if (evthread_use_pthreads() != 0) {
		*errp = sl_xstrdup("libevent: cannot enable pthreads support");
		return NULL;
	}
	ws = sl_xcalloc(nworkers, sizeof *ws);
	for (i = 0; i < nworkers; i++) {
		struct sl_worker *w = sl_xcalloc(1, sizeof *w);
		struct event_config *ecfg;

		ws[i] = w;
		w->id = i;
		w->held = w->held_inline;
		w->held_cap = SL_MAX_HELD_TABLES;
		w->stop_fd = -1;
		w->limit_fd = -1;
		/* The retry budget starts full: a fresh process facing a
		 * dead server retries its first requests too. */
		w->retry_tokens = SL_RETRY_TOKENS_MAX;
		/* Only this worker's thread touches its base (stop comes
		 * through stop_fd), so it needs no lock: libevent would take a
		 * mutex around every event_add and loop turn. */
		ecfg = event_config_new();
		if (ecfg == NULL)
			goto fail_msg;
		event_config_set_flag(ecfg, EVENT_BASE_FLAG_NOLOCK);
		w->base = event_base_new_with_config(ecfg);
		event_config_free(ecfg);
		if (w->base == NULL)
			goto fail_msg;
		w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		w->limit_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->stop_fd < 0 || w->limit_fd < 0)
			goto fail_msg;
		w->rng = seed ^ (0x9E3779B97F4A7C15ULL * (i + 1));
		if (w->rng == 0)
			w->rng = 1;
		TAILQ_INIT(&w->conns);
		w->min_epoch = UINT64_MAX;
		/* Room for the most fields any head may have; each parse
		 * sets its own limit (max_headers, after a reload too). */
		w->scratch_head = sl_http_head_new(SL_HTTP_MAX_FIELDS);
		sl_http_parser_init(&w->req_parser, false);
		w->scratch_size = 64 * 1024;
		w->scratch = sl_xmalloc(w->scratch_size);
		w->reap_ev = event_new(w->base, -1, 0, reap_cb, w);
		w->limit_ev = event_new(w->base, -1, EV_PERSIST, limit_cb, w);
		w->starve_ev = event_new(w->base, -1, 0, starve_cb, w);
		w->epoch_ev = event_new(w->base, -1, EV_PERSIST, epoch_cb, w);
		w->limit_wake_ev = event_new(w->base, w->limit_fd,
		    EV_READ | EV_PERSIST, limit_wake_cb, w);
		w->stop_ev = event_new(
		    w->base, w->stop_fd, EV_READ | EV_PERSIST, stop_cb, w);
		if (sl_io_loop_init(&w->io_loop, w->base) != 0)
			goto fail_msg;
		if (w->scratch_head == NULL || w->reap_ev == NULL ||
		    w->limit_ev == NULL || w->starve_ev == NULL ||
		    w->epoch_ev == NULL ||
		    event_add(w->epoch_ev, &one_second) != 0 ||
		    w->limit_wake_ev == NULL ||
		    event_add(w->limit_wake_ev, NULL) != 0 ||
		    w->stop_ev == NULL || event_add(w->stop_ev, NULL) != 0)
			goto fail_msg;
		w->listeners =
		    sl_xcalloc(conf->nlisteners, sizeof *w->listeners);
		w->listener_args =
		    sl_xcalloc(conf->nlisteners, sizeof *w->listener_args);
		w->nlistener_args = conf->nlisteners;
		for (j = 0; j < conf->nlisteners; j++) {
			const struct sl_listener_conf *lc = &conf->listeners[j];
			struct sl_listener_arg *la = &w->listener_args[j];

			la->w = w;
			la->tls = lc->tls_cert != NULL;
			la->index = j;
			snprintf(la->name, sizeof la->name, "%s", lc->name);
			la->bind = lc->bind.ss;
			la->bind_text = sl_xstrdup(lc->bind.text);
			w->listeners[j] = evconnlistener_new_bind(w->base,
			    accept_cb, la,
			    LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
			        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
			    1024, (const struct sockaddr *)&lc->bind.ss,
			    (int)lc->bind.len);
			if (w->listeners[j] == NULL) {
				int err = errno;

				*errp = sl_xasprintf("%s: [listener:%s]: "
				                     "cannot listen on %s: %s",
				    conf->path, lc->name, lc->bind.text,
				    strerror(err));
				sl_workers_free(ws, i + 1);
				return NULL;
			}
			evconnlistener_set_error_cb(
			    w->listeners[j], accept_error_cb);
			w->nlisteners++;
		}
	}
	all_workers = ws;
	nall_workers = nworkers;
	return ws;
fail_msg:
	*errp = sl_xstrdup("cannot create worker event loops");
	sl_workers_free(ws, i + 1);
	return NULL;
}

/* A reload to CONF: a running TLS listener stays TLS, a plain one plain
 * (see worker.h). */
int
sl_workers_check_tls(struct sl_worker **ws, unsigned n,
    const struct sl_config *conf, char **errp)
{
	const struct sl_worker *w = n > 0 ? ws[0] : NULL;
	const struct sl_listener_conf *lc;
	size_t j;

	for (j = 0; w != NULL && j < w->nlistener_args; j++) {
		const struct sl_listener_arg *la = &w->listener_args[j];

		lc = sl_conf_listener(conf, la->name);
		if (la->tls && (lc == NULL || lc->tls_cert == NULL)) {
			*errp = sl_xasprintf("%s:%d: [listener:%s]: a running "
			                     "TLS listener cannot %s without a "
			                     "restart",
			    conf->path, lc ? lc->line : 1, la->name,
			    lc ? "lose tls_cert" : "be removed");
			return -1;
		}
		if (!la->tls && lc != NULL && lc->tls_cert != NULL) {
			*errp = sl_xasprintf("%s:%d: [listener:%s]: a running "
			                     "plain HTTP listener cannot turn "
			                     "to TLS without a restart",
			    conf->path, lc->line, la->name);
			return -1;
		}
	}
	return 0;
}

/* A reload to CONF: a warning for each listener it adds, removes or moves,
 * against the sockets bound at start (see worker.h). */
void
sl_workers_warn_listeners(
    struct sl_worker **ws, unsigned n, const struct sl_config *conf)
{
	const struct sl_worker *w = n > 0 ? ws[0] : NULL;
	const struct sl_listener_conf *lc;
	size_t i, j;

	if (w == NULL)
		return;
	for (j = 0; j < w->nlistener_args; j++) {
		const struct sl_listener_arg *la = &w->listener_args[j];

		if ((lc = sl_conf_listener(conf, la->name)) == NULL)
			sl_log_warn("reload: [listener:%s] was removed; it "
			            "keeps listening on %s until sluice "
			            "restarts",
			    la->name, la->bind_text);
		else if (!sl_conf_same_sockaddr(&lc->bind.ss, &la->bind))
			sl_log_warn("reload: [listener:%s] bind changed from "
			            "%s to %s; it keeps listening on %s until "
			            "sluice restarts",
			    la->name, la->bind_text, lc->bind.text,
			    la->bind_text);
	}
	for (i = 0; i < conf->nlisteners; i++) {
		lc = &conf->listeners[i];
		for (j = 0; j < w->nlistener_args; j++) {
			if (strcmp(w->listener_args[j].name, lc->name) == 0)
				break;
		}
		if (j == w->nlistener_args)
			sl_log_warn("reload: [listener:%s] is new; it takes "
			            "effect (listening on %s) when sluice "
			            "restarts",
			    lc->name, lc->bind.text);
	}
}

/* Allocate counters for the version ids of a table, in every worker. */
void
sl_workers_prepare_table(
    struct sl_worker **ws, unsigned n, const struct sl_route_table *t)
{
	unsigned i;
	uint32_t id;
	size_t j, k;

	/* Cannot happen: sl_route_build refuses a table past the limit. */
	if (t->nversion_ids > SL_MAX_VERSION_IDS)
		sl_fatal(
		    0, "more than %d service versions", SL_MAX_VERSION_IDS);
	for (i = 0; i < n; i++) {
		sl_upstream_pools_prepare(ws[i], t->nserver_ids);
		/* The table's own: a forgotten id has none until it is
		 * given to a name again. */
		for (k = 0; k < t->nservices; k++) {
			for (j = 0; j < t->services[k].nversions; j++) {
				id = t->services[k].versions[j].id;
				if (ws[i]->vstats[id] == NULL)
					ws[i]->vstats[id] = sl_xcalloc(
					    1, sizeof(struct sl_vstats));
			}
		}
	}
}

/* Start the worker threads. */
int
sl_workers_start(struct sl_worker **ws, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		/* Each worker sees the current table before serving. */
		sl_worker_release_table(ws[i], sl_worker_hold_table(ws[i]));
		if (pthread_create(&ws[i]->thread, NULL, worker_main, ws[i]) !=
		    0)
			return -1;
	}
	return 0;
}

/* Wake worker W's stop_ev from another thread (see stop_fd). */
static void
signal_worker(struct sl_worker *w, uint64_t value)
{
	/* Cannot fail short of EBADF; an overflowing count (EAGAIN) would
	 * need 2^64 stops. */
	if (write(w->stop_fd, &value, sizeof value) != (ssize_t)sizeof value)
		sl_log(
		    SL_LOG_WARN, errno, "worker %u: cannot signal stop", w->id);
}

/* Stop the workers: drain for at most DRAIN_MS, then close the rest. */
void
sl_workers_stop(struct sl_worker **ws, unsigned n, uint32_t drain_ms)
{
	struct timespec deadline, now;
	unsigned i;

	for (i = 0; i < n; i++)
		signal_worker(ws[i], 1);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += drain_ms / 1000;
	deadline.tv_nsec += (long)(drain_ms % 1000) * 1000000;
	for (i = 0; i < n; i++) {
		for (;;) {
			struct timespec ts;

			if (pthread_tryjoin_np(ws[i]->thread, NULL) == 0)
				break;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > deadline.tv_sec ||
			    (now.tv_sec == deadline.tv_sec &&
			        now.tv_nsec >= deadline.tv_nsec)) {
				signal_worker(ws[i], SL_WORKER_FORCE);
				pthread_join(ws[i]->thread, NULL);
				/* Read once joined: the worker writes it. */
				sl_log_warn("worker %u: drain timeout, closing "
				            "%u connections",
				    ws[i]->id, ws[i]->nconns);
				break;
			}
			ts.tv_sec = 0;
			ts.tv_nsec = 20 * 1000000;
			nanosleep(&ts, NULL);
		}
	}
}

/* Free workers after their threads have ended. */
void
sl_workers_free(struct sl_worker **ws, unsigned n)
{
	unsigned i;
	size_t j;
	uint32_t k;

	if (ws == NULL)
		return;
	if (all_workers == ws) {
		all_workers = NULL;
		nall_workers = 0;
	}
	for (i = 0; i < n; i++) {
		struct sl_worker *w = ws[i];

		if (w == NULL)
			continue;
		w->stopping = true; /* no accepting again as conns close */
		for (j = 0; j < w->nlisteners; j++)
			evconnlistener_free(w->listeners[j]);
		free(w->listeners);
		for (j = 0; j < w->nlistener_args; j++)
			free(w->listener_args[j].bind_text);
		free(w->listener_args);
		if (w->base != NULL) {
			sl_conn_close_all(w);
			sl_conn_reap(w);
			sl_upstream_close_idle(w);
		}
		/* With the lines of the requests closing cut just now. */
		sl_worker_alog_flush(w);
		sl_alog_buf_free(&w->alog);
		for (k = 0; k < SL_MAX_SERVER_IDS; k++) {
			if (w->pools[k] != NULL)
				sl_tls_session_cache_clear(&w->pools[k]->tls);
			free(w->pools[k]);
		}
		for (k = 0; k < SL_MAX_VERSION_IDS; k++)
			free(w->vstats[k]);
		sl_http_head_free(w->scratch_head);
		free(w->scratch);
		if (w->drain_ev != NULL)
			event_free(w->drain_ev);
		if (w->reap_ev != NULL)
			event_free(w->reap_ev);
		if (w->limit_ev != NULL)
			event_free(w->limit_ev);
		if (w->starve_ev != NULL)
			event_free(w->starve_ev);
		if (w->epoch_ev != NULL)
			event_free(w->epoch_ev);
		if (w->limit_wake_ev != NULL)
			event_free(w->limit_wake_ev);
		if (w->limit_fd >= 0)
			close(w->limit_fd);
		if (w->stop_ev != NULL)
			event_free(w->stop_ev);
		if (w->stop_fd >= 0)
			close(w->stop_fd);
		sl_io_loop_free(&w->io_loop);
		if (w->base != NULL)
			event_base_free(w->base);
		if (w->held != w->held_inline)
			free(w->held);
		free(w);
	}
	free(ws);
}

/* Oldest table epoch still held by any worker. */
uint64_t
sl_workers_min_epoch(struct sl_worker **ws, unsigned n)
{
	uint64_t min = UINT64_MAX, e;
	unsigned i;

	for (i = 0; i < n; i++) {
		e = __atomic_load_n(&ws[i]->min_epoch, __ATOMIC_ACQUIRE);
		if (e < min)
			min = e;
	}
	return min;
}
