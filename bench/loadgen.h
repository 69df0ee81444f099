/*
 * loadgen.h — sl-loadgen, the open-loop load generator used by
 * bench/compare.sh: what the command line (loadgen.c) hands to the engine
 * (loadgen_conn.c) and what each engine thread hands back.
 *
 * Open loop: request i (0, 1, 2, ...) is due at t0 + i / rate, whatever
 * happened to the earlier ones. Its latency is measured from that scheduled
 * time to the last byte of its response, so time spent waiting for a free
 * connection (a slow server) counts in full: no coordinated omission.
 */
#ifndef SL_LOADGEN_H
#define SL_LOADGEN_H

#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analysis/histogram.h"

/* Longest request head sl-loadgen builds (request line + headers). */
#define LG_MAX_REQUEST 8192

/*
 * The request head, cut at every "{n}" of a --header: piece[0] user
 * piece[1] user ... piece[npieces - 1], where "user" is the decimal user
 * number. Built once by loadgen.c, read by every thread.
 */
struct lg_request {
	char **piece;
	size_t *piece_len;
	size_t npieces;
	size_t max_len; /* upper bound of a built request, bytes */
};

/* Everything the engine needs; filled and validated by loadgen.c. */
struct lg_opts {
	struct sockaddr_storage addr; /* the server */
	socklen_t addrlen;
	struct lg_request request;
	double rate;     /* requests per second, all threads together */
	double duration; /* measured seconds */
	double warmup;   /* seconds run before, not measured */
	double timeout;  /* seconds from send to last byte */
	double grace;    /* seconds to wait for stragglers after the end */
	uint64_t users;  /* {n} cycles over 0 .. users - 1 */
	unsigned conns;  /* connections, all threads together */
	unsigned threads;
	uint64_t t0_ns;  /* CLOCK_MONOTONIC time request 0 is due */
	uint64_t total;  /* requests scheduled, warm-up included */
	uint64_t warm_n; /* the first warm_n requests are not measured */
};

/*
 * Counters of measured requests, declared once: the per-thread struct, the
 * merge and both reports come from this list.
 *
 *   scheduled   due inside the measured window
 *   sent        handed to a connection
 *   completed   whole response received (any status)
 *   s1xx..s5xx  completed, by status class
 *   connect_err connection refused or failed before the request went out
 *   io_err      reset, closed before the end of the response, bad HTTP
 *   timeout     no whole response within --timeout of being sent
 *   unfinished  still queued or in flight when the run ended
 *   opened      connections established (warm-up included)
 */
#define LG_COUNTERS(X)                                                         \
	X(scheduled)                                                           \
	X(sent)                                                                \
	X(completed)                                                           \
	X(s1xx)                                                                \
	X(s2xx)                                                                \
	X(s3xx)                                                                \
	X(s4xx)                                                                \
	X(s5xx)                                                                \
	X(connect_err)                                                         \
	X(io_err)                                                              \
	X(timeout)                                                             \
	X(unfinished)                                                          \
	X(opened)

/* What one thread measured; summed by lg_result_merge(). */
struct lg_result {
#define X(name) uint64_t name;
	LG_COUNTERS(X)
#undef X
	unsigned max_open;      /* most connections open at once */
	uint64_t last_done_ns;  /* when the last measured response ended */
	struct sl_hist latency; /* scheduled time -> last byte, µs */
	struct sl_hist lag;     /* scheduled time -> handed to a socket, µs */
};

/*
 * Runs thread number id of opts->threads: sends requests id, id + threads,
 * id + 2 * threads, ... on at most its share of opts->conns connections,
 * until the schedule is done and every response is in or the grace period
 * is over. Fills res (owned by the caller, zeroed by this function).
 * Returns 0, or -1 with a message on stderr if the thread could not start.
 */
int lg_thread_run(
    const struct lg_opts *opts, unsigned id, struct lg_result *res);

/* dst += src, counters, histograms and maxima. */
void lg_result_merge(struct lg_result *dst, const struct lg_result *src);

/*
 * Writes the head of a request for user number user into buf (at least
 * req->max_len bytes). Returns its length.
 */
size_t lg_request_build(const struct lg_request *req, uint64_t user, char *buf);

/* Monotonic clock, nanoseconds. */
uint64_t lg_now_ns(void);

#endif /* SL_LOADGEN_H */
