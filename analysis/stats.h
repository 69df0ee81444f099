/*
 * stats.h — per-worker counters, declared once.
 *
 * Each worker is the only writer of its counters; it updates them with a
 * relaxed load and store (plain moves on x86-64, no lock prefix), and any
 * other thread reads them with relaxed loads, so a reader never sees a torn
 * value. The control thread sums the workers' copies when someone asks.
 *
 * The lists below are X-macros: X(field, "prometheus_suffix", "help").
 * They generate the structs, the merge, and the names used by the admin
 * endpoint and the control socket, so a counter is declared exactly once.
 */
#ifndef SL_STATS_H
#define SL_STATS_H

#include <stdint.h>

/* Per (service, version): what users of that version experienced. */
#define SL_VSTATS_COUNTERS(X)                                                  \
	X(requests, "requests", "requests routed to the version")              \
	X(resp_1xx, "responses_1xx", "final responses 1xx")                    \
	X(resp_2xx, "responses_2xx", "responses 2xx")                          \
	X(resp_3xx, "responses_3xx", "responses 3xx")                          \
	X(resp_4xx, "responses_4xx", "responses 4xx")                          \
	X(resp_5xx, "responses_5xx", "responses 5xx (origin or sluice)")       \
	X(err_connect_refused, "connect_refused", "upstream connect refused")  \
	X(err_connect_timeout, "connect_timeout",                              \
	    "upstream connect timed out")                                      \
	X(err_reset, "reset", "upstream closed or reset mid-exchange")         \
	X(err_response_timeout, "response_timeout",                            \
	    "upstream response timed out")                                     \
	X(err_bad_response, "bad_response", "malformed upstream response")     \
	X(err_no_server, "no_server", "no server of the version available")    \
	X(bytes_in, "bytes_in", "request bytes received from clients")         \
	X(bytes_out, "bytes_out", "response bytes sent to clients")

/* Per worker: connections, refusals and limits. */
#define SL_WSTATS_COUNTERS(X)                                                  \
	X(conns_accepted, "connections_accepted",                              \
	    "client connections accepted")                                     \
	X(conns_closed, "connections_closed", "client connections closed")     \
	X(requests, "requests", "request heads parsed")                        \
	X(bad_request, "bad_request", "requests refused with 400")             \
	X(header_too_large, "header_too_large", "requests refused with 431")   \
	X(not_implemented, "not_implemented", "requests refused with 501/505") \
	X(expectation_failed, "expectation_failed",                            \
	    "requests refused with 417")                                       \
	X(header_timeout, "header_timeout", "request heads timed out (408)")   \
	X(body_timeout, "body_timeout",                                        \
	    "request or response bodies idle too long")                        \
	X(no_route, "no_route", "requests matching no service (404)")          \
	X(client_aborts, "client_aborts",                                      \
	    "clients gone mid-request or mid-response")                        \
	X(conn_limit, "connection_limit",                                      \
	    "times accepting paused at max_connections")                       \
	X(upstream_opened, "upstream_connections_opened",                      \
	    "upstream connections opened")                                     \
	X(upstream_reused, "upstream_connections_reused",                      \
	    "requests sent on a pooled connection")                            \
	X(upstream_retries, "upstream_retries",                                \
	    "requests retried after a stale pooled connection")                \
	X(upgrades, "upgrades", "connections upgraded to tunnels")

struct sl_vstats {
#define SL_X(f, n, h) uint64_t f;
	SL_VSTATS_COUNTERS(SL_X)
#undef SL_X
	int64_t active; /* requests in flight (gauge) */
};

struct sl_wstats {
#define SL_X(f, n, h) uint64_t f;
	SL_WSTATS_COUNTERS(SL_X)
#undef SL_X
	int64_t conns_active; /* gauge */
};

/* Single-writer increment: no lock prefix, never torn for readers. */
#define SL_STAT_ADD(field, n)                                                  \
	__atomic_store_n(&(field),                                             \
	    __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n),                 \
	    __ATOMIC_RELAXED)
#define SL_STAT_INC(field)  SL_STAT_ADD(field, 1)
#define SL_STAT_READ(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* Add the counters of SRC (read with relaxed loads) into DST. */
void sl_vstats_merge(struct sl_vstats *dst, const struct sl_vstats *src);
void sl_wstats_merge(struct sl_wstats *dst, const struct sl_wstats *src);

#endif
