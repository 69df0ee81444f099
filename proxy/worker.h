/*
 * worker.h — a worker thread: its own event_base, its own SO_REUSEPORT
 * listening sockets, upstream pools and counters. A client connection lives
 * on one worker for its whole life; nothing on a worker's request path
 * takes a lock.
 */
#ifndef SL_WORKER_H
#define SL_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "analysis/stats.h"
#include "conf/log.h"
#include "proxy/alog.h"
#include "proxy/http1.h"
#include "proxy/io.h"
#include "proxy/route.h"

struct event;
struct event_base;
struct evbuffer;
struct evconnlistener;
struct sl_config;
struct sl_conn;
struct sl_pool;
struct sl_http_head;
struct sl_route_table;
struct sl_listener_arg;

/* Routing tables a worker holds in flight without allocating (more grow
 * its held array: as many publishes, each outlived by a long request). */
#define SL_MAX_HELD_TABLES 16

/* A routing table a worker still has requests on. */
struct sl_held_table {
	struct sl_route_table *table;
	uint32_t refs;
};

TAILQ_HEAD(sl_conn_list, sl_conn);

struct sl_worker {
	unsigned id;
	pthread_t thread;
	struct event_base *base;
	struct evconnlistener **listeners;
	size_t nlisteners;
	struct sl_listener_arg *listener_args; /* one per listener */
	size_t nlistener_args; /* as bound at start (stop zeroes nlisteners) */
	bool accept_paused;
	bool accept_starved; /* out of descriptors: a pause (starve_ev) */
	bool stopping;
	struct sl_log_limit accept_log; /* its failed accepts */
	struct sl_log_limit limit_log;  /* its pauses at max_connections */
	struct sl_log_limit client_limit_log; /* max_connections_per_client */

	/* Routing tables: the newest seen, and every one still in use. */
	struct sl_route_table *table;
	struct sl_held_table *held; /* held_inline, or a larger heap copy */
	size_t nheld, held_cap;
	struct sl_held_table held_inline[SL_MAX_HELD_TABLES];
	uint64_t min_epoch; /* atomic: lowest epoch held; read by control */

	/* Upstream pools, indexed by server id. Allocated by the control
	 * thread before it publishes a table naming the id; never moved, so
	 * the control thread may read them (relaxed) for show service. */
	struct sl_pool *pools[SL_MAX_SERVER_IDS];

	/* Counters: vstats[id] are allocated by the control thread before it
	 * publishes a table that uses the id. */
	struct sl_vstats *vstats[SL_MAX_VERSION_IDS];
	struct sl_wstats wstats;

	time_t date_t;               /* when date was formatted */
	char date[SL_HTTP_DATE_LEN]; /* for sluice's own answers */
	uint64_t rng;
	uint32_t retry_tokens;   /* hundredths of a retry, see conn.c */
#define SL_RETRY_TOKENS_MAX 1000 /* a burst of 10 retries; the start */
	struct sl_http_head *scratch_head;
	/* Request heads are parsed here; a request with a body hands the
	 * parser's state on to its upstream connection (conn.c). */
	llhttp_t req_parser;
	char *scratch;
	size_t scratch_size;

	struct sl_io_loop io_loop; /* output flushing, see proxy/io.h */
	struct sl_alog_buf alog;   /* access log lines not written yet */
	struct sl_conn_list conns;
	uint32_t nconns;
	struct event *limit_ev;  /* accept paused: look at the limit again */
	struct event *starve_ev; /* accept starved: try again */
	struct event *epoch_ev;  /* once a second: move to the newest table */
	int limit_fd; /* written by a worker that found the process full */
	struct event *limit_wake_ev;
	struct sl_conn *graveyard; /* closed, freed by reap_ev */
	struct event *reap_ev;
	/* The base has no lock (EVENT_BASE_FLAG_NOLOCK): other threads talk
	 * to the worker only through this eventfd. Writing 1 asks it to stop
	 * accepting and drain; SL_WORKER_FORCE (a larger count) to leave its
	 * loop now. */
	int stop_fd;
	struct event *stop_ev;
	struct event *drain_ev;
};

/* Write W's access log lines (from its own thread, or once it has
 * stopped), counting those that could not be. */
void sl_worker_alog_flush(struct sl_worker *w);

/*
 * Before the first start (not with --takeover): is every address CONF
 * listens on, its listeners' and the admin endpoint's, free? Those
 * sockets are bound with SO_REUSEPORT, which would silently share a port
 * with another sluice already there (traffic split between two processes
 * with different runtime state); a plain bind fails instead. Returns 0,
 * or -1 with *errp naming the first address in use (heap, caller frees).
 */
int sl_workers_check_binds(const struct sl_config *conf, char **errp);

/*
 * Create NWORKERS workers for CONF: event bases and listening sockets
 * (bound here, so bind errors are reported at start-up). Returns NULL with
 * *errp set on failure.
 */
struct sl_worker **sl_workers_create(
    const struct sl_config *conf, unsigned nworkers, char **errp);

/*
 * A reload to CONF (control thread): a listener bound at start with TLS
 * must keep its tls_cert, one bound plain must not get one (its socket
 * would go on serving plain HTTP). Compared with what the workers bound,
 * not with the config of the last reload, so that no two reloads (one
 * removing the listener, the next bringing it back) get round it.
 * Returns 0, or -1 with *ERRP a file:line message.
 */
int sl_workers_check_tls(struct sl_worker **workers, unsigned nworkers,
    const struct sl_config *conf, char **errp);

/*
 * A reload to CONF (control thread): listeners are bound once, at start,
 * so log a warning naming each listener CONF adds, removes or binds to
 * another address; the sockets bound at start stay as they are until
 * sluice restarts. Compared with what the workers bound, not with the
 * config of the last reload.
 */
void sl_workers_warn_listeners(struct sl_worker **workers, unsigned nworkers,
    const struct sl_config *conf);

/* Start the threads. */
int sl_workers_start(struct sl_worker **workers, unsigned nworkers);

/*
 * Ask every worker to stop accepting, finish in-flight requests for at most
 * DRAIN_MS, then leave its loop; joins the threads.
 */
void sl_workers_stop(
    struct sl_worker **workers, unsigned nworkers, uint32_t drain_ms);

void sl_workers_free(struct sl_worker **workers, unsigned nworkers);

/* Allocate counters for every version id of TABLE (control thread). */
void sl_workers_prepare_table(struct sl_worker **workers, unsigned nworkers,
    const struct sl_route_table *table);

/* Lowest routing-table epoch any worker still holds. */
uint64_t sl_workers_min_epoch(struct sl_worker **workers, unsigned nworkers);

/* Worker side: the table for a new request (held until released). */
struct sl_route_table *sl_worker_hold_table(struct sl_worker *w);
void sl_worker_release_table(struct sl_worker *w, struct sl_route_table *t);
/* The newest table, without holding it (valid while it is w->table): a
 * new connection's timeouts come from it. */
struct sl_route_table *sl_worker_current_table(struct sl_worker *w);

/* Worker side: a client connection opened, or closed (then accept again
 * if paused and the process is below max_connections). */
void sl_worker_conn_opened(struct sl_worker *w);
void sl_worker_conn_closed(struct sl_worker *w);

/* Did accept fail for want of descriptors or memory (ERR: errno)? Then
 * the listener pauses (the connection waits in the backlog). */
bool sl_accept_starved(int err);

#endif
