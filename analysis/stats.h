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

#include "analysis/histogram.h"

/*
 * Per (service, version): what users of that version experienced.
 * X(field, family, label, label_value, help): Prometheus exposes
 * sluice_<family>_total{service,version[,label="label_value"]}; /stats
 * groups the labelled ones under their family.
 */
#define SL_VSTATS_COUNTERS(X)                                                  \
	X(requests, "routed_requests", NULL, NULL,                             \
	    "Requests routed to the version.")                                 \
	X(routed_override, "routed_requests_by_rule", "rule", "override",      \
	    "Of the requests routed to the version, those a proven override "  \
	    "header or a pin sent there rather than the weights.")             \
	X(routed_pin, "routed_requests_by_rule", "rule", "pin", NULL)          \
	X(resp_1xx, "requests", "code_class", "1xx",                           \
	    "Responses sent to clients by status class, sluice's own "         \
	    "included.")                                                       \
	X(resp_2xx, "requests", "code_class", "2xx", NULL)                     \
	X(resp_3xx, "requests", "code_class", "3xx", NULL)                     \
	X(resp_4xx, "requests", "code_class", "4xx", NULL)                     \
	X(resp_5xx, "requests", "code_class", "5xx", NULL)                     \
	X(err_connect_refused, "upstream_errors", "kind", "connect_refused",   \
	    "Upstream failures by kind.")                                      \
	X(err_connect_timeout, "upstream_errors", "kind", "connect_timeout",   \
	    NULL)                                                              \
	X(err_reset, "upstream_errors", "kind", "reset", NULL)                 \
	X(err_response_timeout, "upstream_errors", "kind", "response_timeout", \
	    NULL)                                                              \
	X(err_bad_response, "upstream_errors", "kind", "bad_response", NULL)   \
	X(err_no_server, "upstream_errors", "kind", "no_server", NULL)         \
	X(err_tls, "upstream_errors", "kind", "tls", NULL)                     \
	X(unanswered, "requests_unanswered", NULL, NULL,                       \
	    "Requests routed to the version that ended with no response: the " \
	    "client went away before its head came (judged against the "       \
	    "stable version's share by the analyzer).")                        \
	X(resp_cut, "responses_cut", NULL, NULL,                               \
	    "Responses the origin cut short after their head (errors for "     \
	    "the analyzer).")                                                  \
	X(bytes_in, "received_bytes", NULL, NULL,                              \
	    "Request bytes received from clients.")                            \
	X(bytes_out, "sent_bytes", NULL, NULL,                                 \
	    "Response bytes sent to clients.")

/*
 * Per (service, version), kept for the analyzer and not exposed as they
 * are (the same X as above, with no family). The requests an override or
 * a pin routed are the version's in every counter above, and left out of
 * what the analyzer judges: the weights did not draw them at random (a QA
 * group pinned to the canary, a preview), so the canary's users and the
 * stable version's would no longer be alike. These are their share of
 * the counters the analyzer reads (sl_verdict_window_of()).
 */
#define SL_VSTATS_HIDDEN(X)                                                    \
	X(unjudged_responses, NULL, NULL, NULL, NULL) /* in a resp_ class */   \
	X(unjudged_4xx, NULL, NULL, NULL, NULL)                                \
	X(unjudged_errors, NULL, NULL, NULL, NULL) /* 5xx and cut */           \
	X(unjudged_unanswered, NULL, NULL, NULL, NULL)                         \
	/* Requests their own client slowed (of every rule). */                \
	X(client_slowed, NULL, NULL, NULL, NULL)

/* Every counter of struct sl_vstats, exposed or not. */
#define SL_VSTATS_ALL(X) SL_VSTATS_COUNTERS(X) SL_VSTATS_HIDDEN(X)

/* Per worker: connections, refusals and limits. */
#define SL_WSTATS_COUNTERS(X)                                                  \
	X(conns_accepted, "connections_accepted",                              \
	    "client connections accepted")                                     \
	X(conns_closed, "connections_closed", "client connections closed")     \
	X(requests, "request_heads", "request heads parsed")                   \
	X(bad_request, "bad_request", "requests refused with 400")             \
	X(header_too_large, "header_too_large",                                \
	    "requests refused with 431 (or 414: the request line alone)")      \
	X(not_implemented, "not_implemented", "requests refused with 501/505") \
	X(expectation_failed, "expectation_failed",                            \
	    "requests refused with 417")                                       \
	X(header_timeout, "header_timeout", "request heads timed out (408)")   \
	X(idle_timeout, "idle_timeouts",                                       \
	    "connections closed waiting for a request: nothing within "        \
	    "header_timeout of opening, or keepalive_timeout after a "         \
	    "response")                                                        \
	X(body_timeout, "body_timeout",                                        \
	    "request or response bodies idle too long")                        \
	X(no_route, "no_route", "requests matching no service (404)")          \
	X(override_unproven, "override_unproven",                              \
	    "override headers ignored for want of proof: no secret, a wrong "  \
	    "one, or an address outside override_networks")                    \
	X(override_no_version, "override_no_version",                          \
	    "proven override headers ignored: they named no version of the "   \
	    "service")                                                         \
	X(max_forwards, "max_forwards_answered",                               \
	    "OPTIONS and TRACE requests with Max-Forwards: 0, answered by "    \
	    "sluice")                                                          \
	X(client_aborts, "client_aborts",                                      \
	    "clients gone mid-request or mid-response")                        \
	X(conn_limit, "connection_limit",                                      \
	    "times accepting paused at max_connections")                       \
	X(client_conn_limit, "client_connection_limit",                        \
	    "requests answered 429: their connection was opened while its "    \
	    "address held max_connections_per_client")                         \
	X(access_log_dropped, "access_log_dropped",                            \
	    "access log lines lost: not written (a full disk, say) or no "     \
	    "memory to format them")                                           \
	X(accept_failures, "accept_failures",                                  \
	    "accepts that failed for want of descriptors or memory (each "     \
	    "pauses that worker's accepting for 100 ms)")                      \
	X(upstream_local_failures, "upstream_local_failures",                  \
	    "origin connections sluice could not open for want of "            \
	    "descriptors, ports or memory (503)")                              \
	X(upstream_opened, "upstream_connections_opened",                      \
	    "upstream connections opened")                                     \
	X(upstream_reused, "upstream_connections_reused",                      \
	    "requests sent on a pooled connection")                            \
	X(upstream_idle_dead, "upstream_pooled_found_closed",                  \
	    "pooled connections found closed by a check before a request "     \
	    "that could not be sent again")                                    \
	X(upstream_ejections, "upstream_ejections",                            \
	    "servers ejected by passive outlier detection (each worker "       \
	    "ejects on its own)")                                              \
	X(upstream_retries, "upstream_retries",                                \
	    "requests retried on another server or after a stale pooled "      \
	    "connection")                                                      \
	X(upstream_tls_resumed, "upstream_tls_resumed",                        \
	    "TLS connections to origins that resumed a session")               \
	X(upgrades, "upgrades", "connections upgraded to tunnels")             \
	X(tls_handshakes, "tls_handshakes",                                    \
	    "TLS handshakes completed by clients")                             \
	X(tls_resumed, "tls_resumed",                                          \
	    "TLS handshakes that resumed a session (ticket)")                  \
	X(tls_handshake_failures, "tls_handshake_failures",                    \
	    "TLS handshakes failed or abandoned by clients")                   \
	X(tls_handshake_timeouts, "tls_handshake_timeouts",                    \
	    "TLS handshakes not done within header_timeout")                   \
	X(tls_plaintext, "tls_plaintext",                                      \
	    "plain HTTP requests sent to a TLS listener (answered 400)")       \
	X(tls_client_cert_refused, "tls_client_cert_refused",                  \
	    "TLS handshakes refused for a missing or unverified client "       \
	    "certificate")

/*
 * Groups of sticky buckets (bucket % SL_GROUPS): a sticky split keeps each
 * user's requests on one version, and users differ, so a version's
 * requests are not independent observations. What each group of users
 * did tells the analyzer how much of a version's variation lies between
 * users (its design effect, analysis/verdict.h).
 */
#define SL_GROUPS 64
struct sl_groups {
	/* Final responses and requests left unanswered, and the errors
	 * among them (5xx, cut short, unanswered). */
	uint64_t n[SL_GROUPS];
	uint64_t err[SL_GROUPS];
	/* Latencies the analyzer judges (not client-slowed ones), as
	 * histogram bucket indexes (a log scale): their count, sum and sum
	 * of squares. */
	uint64_t lat_n[SL_GROUPS];
	uint64_t lat_sum[SL_GROUPS];
	uint64_t lat_sq[SL_GROUPS];
};

/* How many times the variance of an error rate and of a mean latency (log
 * scale) exceed what as many independent requests would give. */
struct sl_deffs {
	double errors, latency;
};

/*
 * The design effects of a comparison of CANARY with STABLE, from their
 * groups. The stable version's are its own: the variance between its
 * groups over the binomial (errors) or the total (latency) one, taken as
 * 1 within three standard deviations of its estimate, or with fewer than
 * 4 groups. The canary's are not its own: when it fails some users and
 * not others, its spread between groups is the failure, and taken for the
 * users' variety it would hide it (its design effect would grow with its
 * traffic, and its evidence stop growing). Under "the canary is fine" its
 * users are like the stable version's, so the within-group correlation
 * the stable's imply, rho = (D - 1) / (m - 1) with m = sum n^2 / sum n
 * the weighted mean group size, gives the canary 1 + (m' - 1) rho with
 * its own group sizes m' (a heavy user of its own still weighs).
 */
void sl_groups_deffs(const struct sl_groups *stable,
    const struct sl_groups *canary, struct sl_deffs *st, struct sl_deffs *ca);

struct sl_vstats {
#define SL_X(f, fam, l, lv, h) uint64_t f;
	SL_VSTATS_ALL(SL_X)
#undef SL_X
	int64_t active; /* requests in flight (gauge) */
	/* Full request time as the proxy saw it: first byte of the request to
	 * last byte of the response, microseconds. */
	struct sl_hist latency;
	/* Of those, the ones the analyzer leaves out: the requests their own
	 * client slowed (most of the time, and at least SL_CLIENT_SLOW_MIN_US,
	 * spent waiting for it: a head or body trickled in, a response read
	 * slowly), whose time a client chose, not the version; and those an
	 * override or a pin routed (SL_VSTATS_HIDDEN). */
	struct sl_hist latency_unjudged;
	/* The requests the weights routed, by user group. */
	struct sl_groups groups;
};

/* Below this, no request counts as slowed by its client (a head split
 * over two packets is not a slow client). */
#define SL_CLIENT_SLOW_MIN_US 1000

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

/* A - B for two reads of counters that only grow, or 0 where B came out
 * larger (read later, or a part of A read before its whole). */
static inline uint64_t
sl_stat_since(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

/*
 * Add the counters and histogram of SRC, a live per-worker copy read with
 * relaxed loads, into DST (a reader's private copy).
 */
void sl_vstats_merge(struct sl_vstats *dst, const struct sl_vstats *src);

/*
 * A sum of V's counters (read with relaxed loads) that grows whenever any
 * of them, its histograms or its groups do: every one only grows, and a
 * histogram or group changes with a counter. Equal sums of one version's
 * counters read at two times mean nothing happened in between but maybe
 * a change of active.
 */
uint64_t sl_vstats_moved(const struct sl_vstats *v);

/* DST = A - B for the counters and histogram (A later than B). */
void sl_vstats_sub(struct sl_vstats *dst, const struct sl_vstats *a,
    const struct sl_vstats *b);

/* Errors for analysis: 5xx sent to the client (origin's or sluice's),
 * and responses the origin cut short after a non-5xx head. */
static inline uint64_t
sl_vstats_errors(const struct sl_vstats *v)
{
	return v->resp_5xx + v->resp_cut;
}

/* Final responses of every class. */
static inline uint64_t
sl_vstats_responses(const struct sl_vstats *v)
{
	return v->resp_1xx + v->resp_2xx + v->resp_3xx + v->resp_4xx +
	    v->resp_5xx;
}

void sl_wstats_merge(struct sl_wstats *dst, const struct sl_wstats *src);

#endif
