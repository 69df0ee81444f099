/*
 * tests/origin/origin.h: shared state of sl-origin, the test origin server.
 *
 * sl-origin is split in two: origin.c owns the command line, the worker
 * threads, their listeners and shutdown; origin_conn.c owns one client
 * connection (HTTP/1.1 parsing and answering). They share the options,
 * the process-wide counters and the worker layout declared here. The
 * options are written once before the workers start and only read after.
 */
#ifndef SL_ORIGIN_H
#define SL_ORIGIN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

struct event;
struct event_base;
struct evconnlistener;
struct sl_origin_conn;

/* Longest request head accepted (bytes); longer ones get 431. */
#define SL_ORIGIN_MAX_HEAD 65536

/* Command-line options; see the table in origin.c for their meaning. */
struct sl_origin_opts {
	const char *listen;
	const char *name;
	uint64_t threads;
	double latency_ms;
	double jitter_ms;
	double cold_ms;
	double cold_latency_ms;
	double error_rate;
	uint64_t error_status;
	uint64_t error_every;
	uint64_t size;
	bool has_size;
	bool chunked;
	bool echo;
	uint64_t seed;
	const char *pidfile;
	bool verbose;
};

extern struct sl_origin_opts sl_origin_opts;

/*
 * Process-wide counters, declared once: the list generates the struct,
 * the /__origin/stats JSON (in this order) and the reset. Relaxed atomics:
 * every worker adds to them, /__origin/stats reads them.
 */
#define SL_ORIGIN_STATS(X)                                                     \
	X(connections)                                                         \
	X(requests)                                                            \
	X(errors)                                                              \
	X(bytes_received)

struct sl_origin_stats {
#define SL_ORIGIN_STAT_FIELD(n) _Atomic uint64_t n;
	SL_ORIGIN_STATS(SL_ORIGIN_STAT_FIELD)
#undef SL_ORIGIN_STAT_FIELD
};

extern struct sl_origin_stats sl_origin_stats;

/*
 * One worker thread: its own event_base and SO_REUSEPORT listener. A
 * connection stays on the worker that accepted it. The "last" fields keep
 * the raw head of the worker's latest request for /__origin/last; another
 * worker may read them, hence the lock (uncontended on the hot path).
 */
struct sl_origin_worker {
	unsigned idx;
	pthread_t thread;
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *wake_ev;   /* read side of wake_fd: stop the loop */
	struct event *resume_ev; /* re-enables the listener after EMFILE */
	evutil_socket_t listen_fd;
	int wake_fd[2];
	uint64_t rng;                 /* xorshift64* state */
	struct sl_origin_conn *conns; /* every open connection */

	pthread_mutex_t last_lock;
	uint64_t last_seq; /* request number of last_head, 0: none */
	size_t last_len;
	char *last_head; /* SL_ORIGIN_MAX_HEAD bytes */
};

extern struct sl_origin_worker *sl_origin_workers;
extern unsigned sl_origin_nworkers;

/* Prepares the static response parts; call once after options are set. */
void sl_origin_conn_init(void);

/*
 * Takes ownership of an accepted socket and serves it on worker w. On
 * failure the socket is closed and the error logged.
 */
void sl_origin_conn_accept(struct sl_origin_worker *w, evutil_socket_t fd);

/* Frees every connection of w; only once w's loop has stopped. */
void sl_origin_conn_free_all(struct sl_origin_worker *w);

/* Next pseudo-random number of worker w (xorshift64*). */
uint64_t sl_origin_rand(struct sl_origin_worker *w);

#endif
