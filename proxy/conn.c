/*
 * conn.c — serving one client connection.
 *
 * The connection is an explicit state machine (enum conn_state), driven by
 * the callbacks of two streams (struct sl_io, proxy/io.h): the client's
 * and, while a request is in progress, one upstream connection's. Output
 * added in a callback leaves in one writev at the end of the loop
 * iteration (io.c). Shape as in libevent's le-proxy:
 * bytes move between the two with evbuffer_remove_buffer (no copies), and a
 * side whose output grows past SL_HIGH_WATER stops the other side reading
 * until it drains (backpressure), so a 100 MB body costs a few buffers.
 *
 * Requests on one connection are served one at a time, in order; pipelined
 * requests wait in the input buffer. A client that half-closes still gets
 * an answer to every complete request it sent before its EOF, then the
 * connection closes (client_finished). A generated error closes the
 * connection unless the whole request was read.
 *
 * Ownership: a connection is freed only by the worker's reap event, never
 * inside one of its own callbacks (conn_close unlinks it and defers).
 *
 * TLS: a connection accepted on a TLS listener starts with a handshake
 * (an sl_io in TLS mode, proxy/io.c; the SSL holds its listener context, so a
 * reload never changes a live connection). The handshake has header_timeout to
 * finish, as a whole (a timer, so a client trickling bytes cannot stretch
 * it); failures, timeouts and plain HTTP sent to the TLS port are counted
 * and logged at debug level, and only ever cost that one connection.
 * Origins with tls = yes are reached the same way (proxy/upstream.c); a
 * handshake or certificate failure there is a 502 counted as kind "tls".
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "conf/log.h"
#include "proxy/alog.h"
#include "proxy/climit.h"
#include "proxy/conn.h"
#include "proxy/http1.h"
#include "proxy/io.h"
#include "proxy/mem.h"
#include "proxy/route.h"
#include "analysis/stats.h"
#include "proxy/tls.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

#define SL_HIGH_WATER    (64 * 1024)
#define SL_RESP_HEAD_MAX (64 * 1024)

enum conn_state {
	CONN_IDLE,     /* between requests, nothing buffered */
	CONN_HEAD,     /* reading a request head */
	CONN_UPSTREAM, /* a request is being served by an upstream */
	CONN_TUNNEL,   /* upgraded: raw bytes both ways */
	CONN_CLOSING,  /* flushing the last response, then close */
};

enum resp_state {
	RESP_NONE,
	RESP_HEAD, /* waiting for the response head */
	RESP_BODY, /* streaming the response body */
};

/* Upstream failures, each with its counter and status. */
enum up_fail {
	FAIL_CONNECT_REFUSED,
	FAIL_CONNECT_TIMEOUT,
	FAIL_RESET,
	FAIL_RESPONSE_TIMEOUT,
	FAIL_BAD_RESPONSE,
	FAIL_TLS, /* origin TLS handshake or certificate check failed */
};

/* What each failure answers and counts, indexed by enum up_fail. */
static const struct {
	size_t counter; /* offset of the counter in struct sl_vstats */
	int status;
	const char *why;
	const char *kind; /* as in upstream_errors and the access log */
} up_fail_answers[] = {
    [FAIL_CONNECT_REFUSED] = {offsetof(struct sl_vstats, err_connect_refused),
        502, "origin refused the connection", "connect_refused"},
    [FAIL_CONNECT_TIMEOUT] = {offsetof(struct sl_vstats, err_connect_timeout),
        504, "origin connect timed out", "connect_timeout"},
    [FAIL_RESET] = {offsetof(struct sl_vstats, err_reset), 502,
        "origin closed the connection", "reset"},
    [FAIL_RESPONSE_TIMEOUT] = {offsetof(struct sl_vstats, err_response_timeout),
        504, "origin response timed out", "response_timeout"},
    [FAIL_BAD_RESPONSE] = {offsetof(struct sl_vstats, err_bad_response), 502,
        "malformed response from origin", "bad_response"},
    [FAIL_TLS] = {offsetof(struct sl_vstats, err_tls), 502,
        "origin TLS handshake failed", "tls"},
};

/* The access log's "error" of a request no server could take. */
#define ALOG_NO_SERVER (SL_POOL_FAIL_KINDS + 1)

_Static_assert(
    sizeof up_fail_answers / sizeof up_fail_answers[0] == SL_POOL_FAIL_KINDS,
    "a log limit per failure kind");

enum addr_limit {
	ADDR_UNCOUNTED = 0, /* no limit when it opened, or no memory to count */
	ADDR_COUNTED,
	ADDR_OVER,
};

struct sl_conn {
	struct sl_worker *w;
	struct sl_upstream *up;
	TAILQ_ENTRY(sl_conn) link;
	struct sl_conn *reap_next;

	uint8_t state;
	uint8_t resp_state;
	bool closed;
	bool tls;      /* came in on a TLS listener */
	bool tls_done; /* its handshake completed */
	bool cut;      /* ends without close_notify: the client failed, or
	                  its answer was cut (RFC 9112 section 9.8) */
	bool client_eof;
	bool client_keepalive;
	bool req_body_done;
	bool req_upgrade;
	bool up_reused;
	/* The request being started was whole in the buffer at its turn. */
	bool whole_at_turn;
	/* The protocols the upgrade offered (sl_http_upgrade_protocols). */
	uint32_t req_protocols;
	bool up_keepalive;
	bool retried;
	bool dechunk;
	bool eof_body;
	bool client_read_paused;
	bool up_read_paused;
	/* The response head was not a 5xx: the server is credited with a
	 * success once the response is whole. */
	bool resp_ok;
	bool resp_counted; /* its status is in the version's counters */
	/* Between requests, with answers piling up unread: no new request
	 * is taken until they drain (client_process). */
	bool pipeline_paused;
	/* Tunnels: a side that sent its EOF, and the other side's output
	 * half-closed after it (once what came before the EOF is out). */
	bool tun_client_eof;
	bool tun_up_eof;
	bool tun_client_shut;
	bool tun_up_shut;
	/* Expect: 100-continue, and no answer from the origin yet: the
	 * client may be waiting for one before it sends its body. */
	bool req_expect;
	/* Answered and half-closed, reading away what the client still
	 * sends (linger) until its EOF or linger_until_ms. */
	bool lingering;
	bool no_linger; /* a client too slow (408) is not waited for */
	/* max_connections_per_client: whether it is counted against its
	 * address, or was opened while the address held every connection
	 * it may (its requests are answered 429). One byte: struct sl_conn
	 * is what every idle connection costs. */
	uint8_t addr_limit; /* enum addr_limit */
	uint8_t req_method;
	uint8_t req_minor;
	uint8_t attempts; /* upstream attempts for this request */
	uint32_t served;  /* requests started on this connection */
	union {           /* one clock: a tunnel's is unused once it closes */
		uint64_t tun_last_ms;     /* tunnel bytes last moved */
		uint64_t linger_until_ms; /* CONN_CLOSING, lingering */
		/* RESP_HEAD: response_timeout is for the whole head (interim
		 * 1xx included), not between its bytes (0: none). */
		uint64_t resp_deadline_ms;
		/* CONN_HEAD: header_timeout runs from the request's turn,
		 * not from its bytes' arrival behind a slow one. */
		uint64_t head_since_ms;
	};
	uint64_t idle_since_ms; /* when it last became idle (keep-alive) */

	size_t scan, up_scan;
	uint64_t req_start_us; /* first byte of the request: latency */
	/* When the bytes of the next request came: the last wake-up that
	 * read any (the bytes buffered came no later), and the first read
	 * after this request's own bytes were all in (0: none yet). A
	 * pipelined request is timed from its arrival, not from when its
	 * turn came. */
	uint64_t read_us, next_read_us;
	/* The time of the request its own client took, so the analyzer can
	 * leave out the requests a client slowed (µs after req_start_us, 32
	 * bits, saturating): client_us so far (the head's arrival, the
	 * body's, the response's reading paused for it); when the body
	 * became the client's to send (moved on by the origin's stalls);
	 * when reading the client paused for the origin, and reading the
	 * origin for the client. */
	uint32_t client_us, body_from, client_paused_at, up_paused_at;

	/* The request in progress (valid in CONN_UPSTREAM). */
	struct sl_route_table *table;
	const struct sl_route_service *svc;
	const struct sl_route_version *ver;
	const struct sl_route_server *srv;
	struct sl_vstats *vs;
	/* access_log: what the request said of itself (NULL: no log, or no
	 * request in progress). */
	struct sl_alog_req *alog;
	struct sl_route_pick pick;
	/* The request head as sent, kept for a retry until the request
	 * ends (sl_mem_alloc'd; NULL when the request cannot be retried). */
	char *retry_head;
	uint32_t retry_len;

	union {
		struct sockaddr sa;
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
	} addr;
	uint8_t ip_len;
	char ip[INET6_ADDRSTRLEN];
	struct event *hs_timer; /* TLS handshake deadline, while it runs */
	struct sl_io io;        /* the client socket */
};

/* An output buffer over the worker's scratch space. */
struct outbuf {
	char *p;
	size_t len, cap;
	bool overflow;
};

static void client_process(struct sl_conn *c);
static bool idempotent(uint8_t method);
static void up_read_cb(struct sl_io *io, void *arg);
static void up_write_cb(struct sl_io *io, void *arg);
static void up_event_cb(struct sl_io *io, short what, void *arg);

/* Microseconds on the monotonic clock, for latency: read once per wake-up
 * of W's loop (the time the socket was found ready, see sl_io_now_us). */
static uint64_t
now_us(struct sl_worker *w)
{
	return sl_io_now_us(&w->io_loop);
}

/* Milliseconds on the same clock. */
static uint64_t
now_ms(struct sl_worker *w)
{
	return now_us(w) / 1000;
}

/* AT_US as microseconds after the request's first byte (its client
 * clocks), 32 bits, saturating. */
static uint32_t
req_clock(const struct sl_conn *c, uint64_t at_us)
{
	uint64_t d = at_us > c->req_start_us ? at_us - c->req_start_us : 0;

	return d < UINT32_MAX ? (uint32_t)d : UINT32_MAX;
}

static uint32_t
add_sat(uint32_t a, uint32_t b)
{
	return a + b >= a ? a + b : UINT32_MAX;
}

/* When the request's bytes handled now (its head, or its body's end)
 * were all in: a request whose head was whole at its turn (pipelined)
 * had them at its arrival, as far as can be told, so none of its time is
 * taken for its client's (a later read may have brought the next
 * request's bytes); otherwise this read brought them. */
static uint64_t
bytes_in_by(const struct sl_conn *c)
{
	return c->whole_at_turn ? c->req_start_us : now_us(c->w);
}

/* Was most of the request's time T (µs, now), and at least
 * SL_CLIENT_SLOW_MIN_US, spent waiting for its client? */
static bool
client_slowed(const struct sl_conn *c, uint64_t t)
{
	uint64_t cu = c->client_us;
	uint32_t now = t < UINT32_MAX ? (uint32_t)t : UINT32_MAX;

	if (c->up_read_paused && now > c->up_paused_at)
		cu += now - c->up_paused_at;
	return cu >= SL_CLIENT_SLOW_MIN_US && cu * 2 > t;
}

/* The request's user group (struct sl_groups), for the analyzer. */
static size_t
group_of(const struct sl_conn *c)
{
	return c->pick.bucket % SL_GROUPS;
}

/* Did the weights route the request (its sticky bucket), not an override
 * or a pin? Only those are the analyzer's (SL_VSTATS_HIDDEN). */
static inline bool
weights_routed(const struct sl_conn *c)
{
	return c->pick.reason < SL_PICK_OVERRIDE;
}

/* A final answer (or none: unanswered) of a request the weights routed,
 * in its version's user group, an error or not. */
static void
count_in_group(const struct sl_conn *c, bool error)
{
	SL_STAT_INC(c->vs->groups.n[group_of(c)]);
	if (error)
		SL_STAT_INC(c->vs->groups.err[group_of(c)]);
}

/* A response of STATUS in the version's class counters, and in its user
 * group (a final one), or among the unjudged. */
static void
count_class(const struct sl_conn *c, int status)
{
	struct sl_vstats *vs = c->vs;

	if (status < 200)
		SL_STAT_INC(vs->resp_1xx);
	else if (status < 300)
		SL_STAT_INC(vs->resp_2xx);
	else if (status < 400)
		SL_STAT_INC(vs->resp_3xx);
	else if (status < 500)
		SL_STAT_INC(vs->resp_4xx);
	else
		SL_STAT_INC(vs->resp_5xx);
	if (!weights_routed(c)) {
		SL_STAT_INC(vs->unjudged_responses);
		if (status >= 500)
			SL_STAT_INC(vs->unjudged_errors);
		else if (status >= 400)
			SL_STAT_INC(vs->unjudged_4xx);
	} else if (status >= 200)
		count_in_group(c, status >= 500);
}

/* The request's full time into its version's histogram, and into the
 * unjudged one too if its client took most of it or the weights did not
 * route it. */
static void
record_latency(struct sl_conn *c)
{
	uint64_t t = now_us(c->w) - c->req_start_us, i;
	size_t g;
	bool slowed;

	sl_hist_record(&c->vs->latency, t);
	slowed = client_slowed(c, t);
	if (slowed)
		SL_STAT_INC(c->vs->client_slowed);
	if (slowed || !weights_routed(c)) {
		/* Recorded in latency before: readers count on it. */
		__atomic_thread_fence(__ATOMIC_RELEASE);
		sl_hist_record(&c->vs->latency_unjudged, t);
		return;
	}
	/* What the analyzer judges, by user group. */
	i = sl_hist_index(t);
	g = group_of(c);
	SL_STAT_INC(c->vs->groups.lat_n[g]);
	SL_STAT_ADD(c->vs->groups.lat_sum[g], i);
	SL_STAT_ADD(c->vs->groups.lat_sq[g], i * i);
}

/* The global settings of the table the worker last saw. */
static const struct sl_global_conf *
gconf(const struct sl_conn *c)
{
	return &c->w->table->conf->global;
}

/* The origin TLS settings of the version serving the request, or NULL
 * for plain HTTP. */
static const struct sl_origin_tls_conf *
origin_tls(const struct sl_conn *c)
{
	const struct sl_origin_tls_conf *t =
	    &c->svc->conf->versions[c->ver - c->svc->versions].tls;

	return t->enabled ? t : NULL;
}

static void
ob_add(struct outbuf *o, const void *s, size_t n)
{
	if (o->len + n > o->cap) {
		o->overflow = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

#define OB_LIT(o, s) ob_add(o, s, sizeof(s) - 1)

static void
ob_str(struct outbuf *o, const char *s)
{
	ob_add(o, s, strlen(s));
}

/* V in decimal (every response's status: snprintf cost ~650
 * instructions, a twentieth of a request). */
static void
ob_uint(struct outbuf *o, unsigned long v)
{
	char num[24], *p = num + sizeof num;

	do
		*--p = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	ob_add(o, p, (size_t)(num + sizeof num - p));
}

/* Copy header I of HEAD as "Name: value\r\n". */
static void
ob_header(struct outbuf *o, const struct sl_http_head *head, const char *base,
    uint32_t i)
{
	const struct sl_http_hdr *h = &head->hdrs[i];
	const char *name = base + h->name_off, *value = base + h->value_off;

	/* Spelled so already (one space, no trailing whitespace, CRLF),
	 * as nearly every header is: the line in one copy, not four. */
	if (value == name + h->name_len + 2 && value[-1] == ' ' &&
	    value[h->value_len] == '\r' && value[h->value_len + 1] == '\n') {
		ob_add(o, name, h->name_len + 2 + h->value_len + 2);
		return;
	}
	ob_add(o, name, h->name_len);
	OB_LIT(o, ": ");
	ob_add(o, value, h->value_len);
	OB_LIT(o, "\r\n");
}

/* Is header I named as a token in one of the Connection headers? */
static bool
named_in_connection(
    const struct sl_http_head *head, const char *base, uint32_t i)
{
	const struct sl_http_hdr *h = &head->hdrs[i];
	uint32_t k;

	for (k = 0; k < head->nhdrs; k++) {
		const char *v, *end;

		if (head->kinds[k] != SL_HDR_CONNECTION)
			continue;
		v = base + head->hdrs[k].value_off;
		end = v + head->hdrs[k].value_len;
		while (v < end) {
			const char *tok, *tend;

			while (
			    v < end && (*v == ' ' || *v == '\t' || *v == ','))
				v++;
			tok = v;
			while (v < end && *v != ',')
				v++;
			tend = v;
			while (
			    tend > tok && (tend[-1] == ' ' || tend[-1] == '\t'))
				tend--;
			if ((size_t)(tend - tok) == h->name_len &&
			    strncasecmp(tok, base + h->name_off, h->name_len) ==
			        0)
				return true;
		}
	}
	return false;
}

/* Add one of "X-Forwarded-For"/"Via" merged from all its headers. */
static void
ob_merged(struct outbuf *o, const struct sl_http_head *head, const char *base,
    enum sl_hdr_kind kind, const char *name, const char *last, size_t lastlen)
{
	uint32_t i;

	ob_str(o, name);
	OB_LIT(o, ": ");
	for (i = 0; i < head->nhdrs; i++) {
		if (head->kinds[i] != kind || head->hdrs[i].value_len == 0)
			continue;
		ob_add(
		    o, base + head->hdrs[i].value_off, head->hdrs[i].value_len);
		OB_LIT(o, ", ");
	}
	ob_add(o, last, lastlen);
	OB_LIT(o, "\r\n");
}

/*
 * Via for a message sluice received as HEAD and forwards: its
 * received-protocol is the version HEAD came with (RFC 9110 section
 * 7.6.3), appended to the Via headers HEAD had (VIA: there were some).
 */
static void
ob_via(struct outbuf *o, const struct sl_http_head *head, const char *base,
    bool via)
{
	const char *mine = head->minor == 0 ? "1.0 sluice" : "1.1 sluice";

	if (via)
		ob_merged(o, head, base, SL_HDR_VIA, "Via", mine, 10);
	else if (head->minor == 0)
		OB_LIT(o, "Via: 1.0 sluice\r\n");
	else
		OB_LIT(o, "Via: 1.1 sluice\r\n");
}

/* Remember the final STATUS sent, for the access log. */
static void
alog_status(struct sl_conn *c, int status)
{
	if (c->alog != NULL)
		c->alog->status = (uint16_t)status;
}

/* Count a response status in the version's counters. */
static void
count_status(struct sl_conn *c, int status)
{
	if (status >= 200 || status == 101)
		alog_status(c, status);
	if (c->vs == NULL)
		return;
	c->resp_counted |= status >= 200;
	count_class(c, status);
}

/*
 * The request's line in the access log (access_log), if there is one,
 * with OUTCOME "answered", "cut" or "unanswered". Its status is the final
 * one counted (count_status); STATUS is for a request whose head was not
 * read (no c->alog: a refusal, plain HTTP on a TLS port). Called before
 * the request lets go of its service, version and server; only while
 * there is an access log (sl_alog_fd), which is also the only time
 * c->alog is set.
 */
static __attribute__((noinline)) void
alog_line(struct sl_conn *c, int status, const char *outcome)
{
	static const char *const rules[] = {
	    [SL_PICK_OVERRIDE] = "override", [SL_PICK_PIN] = "pin"};
	struct sl_worker *w = c->w;
	struct sl_alog_entry e;
	struct timespec now;
	uint8_t fail = c->alog != NULL ? c->alog->fail : 0;

	memset(&e, 0, sizeof e);
	e.client = c->ip;
	e.req = c->alog;
	e.status = c->alog != NULL ? c->alog->status : status;
	e.outcome = outcome;
	if (c->svc != NULL && c->ver != NULL) {
		e.service = c->svc->name;
		e.version = c->ver->name;
		e.rule = c->pick.reason < sizeof rules / sizeof rules[0] &&
		        rules[c->pick.reason] != NULL
		    ? rules[c->pick.reason]
		    : "split";
		e.attempts = c->attempts;
	}
	if (c->srv != NULL)
		e.server = c->srv->addr.text;
	e.error = fail == ALOG_NO_SERVER ? "no_server"
	    : fail > 0                   ? up_fail_answers[fail - 1].kind
	                                 : NULL;
	/* (No first byte timed yet, as for plain HTTP on a TLS port: 0.) */
	e.duration_us = c->req_start_us != 0 && now_us(w) > c->req_start_us
	    ? now_us(w) - c->req_start_us
	    : 0;
	clock_gettime(CLOCK_REALTIME, &now);
	if (sl_alog_add(&w->alog, &e, &now) != 0)
		SL_STAT_INC(w->wstats.access_log_dropped);
	else if (w->alog.len >= SL_ALOG_FLUSH_AT)
		sl_worker_alog_flush(w);
	free(c->alog);
	c->alog = NULL;
}

static inline void
log_request(struct sl_conn *c, int status, const char *outcome)
{
	if (sl_alog_fd >= 0)
		alog_line(c, status, outcome);
}

/* Close the connection: free both sides, defer freeing the struct. */
static void
conn_close(struct sl_conn *c)
{
	struct sl_worker *w = c->w;

	if (c->closed)
		return;
	c->closed = true;
	/* A request still in progress: its answer cut, or none sent. */
	if (sl_alog_fd >= 0 && (c->alog != NULL || c->vs != NULL))
		alog_line(c, 0, c->resp_counted ? "cut" : "unanswered");
	if (c->hs_timer != NULL) {
		event_free(c->hs_timer);
		c->hs_timer = NULL;
	}
	/* Also after the client's FIN: a client that half-closed may still
	 * read, and close_notify tells it the answers are complete. */
	if (c->tls_done && !c->cut)
		sl_io_tls_close_notify(&c->io);
	/* A cut body whose end is the close (close-delimited, or de-chunked
	 * for HTTP/1.0) would look whole after a FIN: reset instead. */
	if (c->cut && (c->eof_body || c->dechunk)) {
		struct linger reset = {1, 0};

		(void)setsockopt(sl_io_fd(&c->io), SOL_SOCKET, SO_LINGER,
		    &reset, sizeof reset);
	}
	if (c->up != NULL) {
		sl_upstream_free(c->up);
		c->up = NULL;
	}
	if (c->srv != NULL) {
		w->pools[c->srv->id]->active--;
		c->srv = NULL;
	}
	if (c->vs != NULL) {
		/* A response counted (its head went out) and cut short, by
		 * the client going away: its time so far is measured too, or
		 * a version whose users give up mid-download would look
		 * faster than it is. */
		if (c->resp_counted && c->table->conf->global.measure)
			record_latency(c);
		else if (!c->resp_counted) {
			/* Gone before any answer: in no status class and no
			 * histogram, so a version that hangs until clients
			 * reset would look like one with no traffic. The
			 * analyzer counts it as failed (error_vs_stable):
			 * in its user group too. */
			SL_STAT_INC(c->vs->unanswered);
			if (weights_routed(c))
				count_in_group(c, true);
			else
				SL_STAT_INC(c->vs->unjudged_unanswered);
		}
		SL_STAT_ADD(c->vs->active, -1);
		c->vs = NULL;
	}
	if (c->table != NULL) {
		sl_worker_release_table(w, c->table);
		c->table = NULL;
	}
	sl_io_free(&c->io);
	if (c->addr_limit == ADDR_COUNTED)
		sl_climit_close(&c->addr.sa);
	TAILQ_REMOVE(&w->conns, c, link);
	w->nconns--;
	SL_STAT_INC(w->wstats.conns_closed);
	SL_STAT_ADD(w->wstats.conns_active, -1);
	c->reap_next = w->graveyard;
	w->graveyard = c;
	event_active(w->reap_ev, EV_TIMEOUT, 0);
	sl_worker_conn_closed(w);
}

/* Free the connections closed since the last reap. */
void
sl_conn_reap(struct sl_worker *w)
{
	struct sl_conn *c;

	while ((c = w->graveyard) != NULL) {
		w->graveyard = c->reap_next;
		sl_mem_free(c->retry_head);
		free(c);
	}
}

/* The request is over (response sent or given up): its access log line
 * (STATUS and OUTCOME as for log_request), then drop its holds. */
static void
end_request(struct sl_conn *c, int status, const char *outcome)
{
	struct sl_worker *w = c->w;

	log_request(c, status, outcome);
	if (c->srv != NULL) {
		w->pools[c->srv->id]->active--;
		c->srv = NULL;
	}
	if (c->vs != NULL) {
		/* The response is complete (or generated): its full time
		 * goes into the version's histogram. */
		if (c->table->conf->global.measure)
			record_latency(c);
		SL_STAT_ADD(c->vs->active, -1);
		c->vs = NULL;
	}
	c->resp_counted = false;
	if (c->table != NULL) {
		sl_worker_release_table(w, c->table);
		c->table = NULL;
	}
	c->svc = NULL;
	c->ver = NULL;
	c->resp_state = RESP_NONE;
	sl_mem_free(c->retry_head);
	c->retry_head = NULL;
}

/*
 * The last answer is out. If the client may still be sending (the body
 * of a request answered early, or bytes waiting in the socket), close in
 * stages (RFC 9112 9.6): half-close, read away what comes until its EOF,
 * for at most LINGER_MS; closing at once would answer those bytes with a
 * reset that can destroy the answer before the client reads it.
 */
#define LINGER_MS      5000
#define LINGER_IDLE_MS 2000

static void
sent_then_close(struct sl_conn *c)
{
	int unread = 0;

	if (c->lingering || c->no_linger || c->client_eof || c->cut ||
	    (c->req_body_done &&
	        evbuffer_get_length(sl_io_input(&c->io)) == 0 &&
	        (ioctl(sl_io_fd(&c->io), FIONREAD, &unread) != 0 ||
	            unread == 0))) {
		conn_close(c);
		return;
	}
	if (c->tls_done)
		sl_io_tls_close_notify(&c->io);
	if (shutdown(sl_io_fd(&c->io), SHUT_WR) != 0) {
		conn_close(c);
		return;
	}
	c->lingering = true;
	c->linger_until_ms = now_ms(c->w) + LINGER_MS;
	evbuffer_drain(
	    sl_io_input(&c->io), evbuffer_get_length(sl_io_input(&c->io)));
	sl_io_set_timeouts(&c->io, LINGER_IDLE_MS, 0);
	sl_io_enable_read(&c->io);
}

/* Close once everything queued for the client has been sent (now, or from
 * client_write_cb when the socket takes the rest). */
static void
close_when_sent(struct sl_conn *c)
{
	c->state = CONN_CLOSING;
	if (sl_io_unsent(&c->io) == 0)
		sent_then_close(c);
}

/*
 * Has the client finished: it half-closed, and no complete request head is
 * left in the input? Requests it sent before its EOF are answered first,
 * in order (as HAProxy and nginx do); a truncated one at the end is not.
 */
static bool
client_finished(struct sl_conn *c)
{
	size_t scan = 0;

	return c->client_eof &&
	    sl_http_find_head_end(sl_io_input(&c->io), &scan) == 0;
}

/* After a response: wait for the next request, or close. */
static void
next_request_or_close(struct sl_conn *c)
{
	if (!c->client_keepalive || client_finished(c) || c->w->stopping) {
		close_when_sent(c);
		return;
	}
	c->state = CONN_IDLE;
	c->idle_since_ms = now_ms(c->w);
	c->scan = 0;
	sl_io_set_timeouts(
	    &c->io, gconf(c)->keepalive_timeout_ms, gconf(c)->body_timeout_ms);
	if (c->client_read_paused) {
		c->client_read_paused = false;
	}
	/* After an EOF only the requests already read are left. */
	if (!c->client_eof)
		sl_io_enable_read(&c->io);
}

/* The Date of sluice's own answers (RFC 9110 6.6.1: an origin server
 * with a clock sends one, and these answers are sluice's): formatted
 * once a second per worker. */
static const char *
worker_date(struct sl_worker *w)
{
	time_t now = time(NULL);

	if (w->date_t != now) {
		w->date_t = now;
		sl_http_date(w->date, now);
	}
	return w->date;
}

/*
 * Send an answer of sluice's own: STATUS with BODY (BLEN bytes, of
 * CTYPE, or none). The connection stays open only when the whole request has
 * been read and the client wants keep-alive. DETAIL is for the debug log.
 */
static void
send_own(struct sl_conn *c, int status, const char *ctype, const char *body,
    size_t blen, const char *detail)
{
	struct evbuffer *out = sl_io_output(&c->io);
	bool keep = c->state == CONN_UPSTREAM && c->req_body_done &&
	    c->client_keepalive && !client_finished(c);
	char msg[512];
	const char *ver = c->state == CONN_UPSTREAM && c->svc != NULL &&
	        c->ver != NULL && c->svc->conf->expose_version
	    ? c->ver->name
	    : NULL;
	int m;

	if (status == 408)
		c->no_linger = true;
	count_status(c, status);
	m = snprintf(msg, sizeof msg,
	    "HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s%s"
	    "Content-Length: %zu\r\n%s%s%s%s\r\n",
	    status, sl_http_reason(status), worker_date(c->w),
	    ctype ? "Content-Type: " : "", ctype ? ctype : "",
	    ctype ? "\r\n" : "", blen, ver ? "X-Sluice-Version: " : "",
	    ver ? ver : "", ver ? "\r\n" : "",
	    !keep                   ? "Connection: close\r\n"
	        : c->req_minor == 0 ? "Connection: keep-alive\r\n"
	                            : "");
	if (m < 0 || (size_t)m >= sizeof msg)
		m = 0; /* cannot happen: the head is short */
	if (c->req_method == HTTP_HEAD && c->state != CONN_HEAD)
		blen = 0;
	/* Head and body in one chain, so that over TLS the answer is one
	 * record. */
	evbuffer_expand(out, (size_t)m + blen);
	evbuffer_add(out, msg, (size_t)m);
	evbuffer_add(out, body, blen);
	if (c->vs != NULL)
		SL_STAT_ADD(c->vs->bytes_out, (uint64_t)m + blen);
	sl_log_debug("client %s: %d %s", c->ip, status, detail ? detail : "");
	if (c->up != NULL) {
		sl_upstream_free(c->up);
		c->up = NULL;
	}
	end_request(c, status, "answered");
	c->client_keepalive = keep;
	next_request_or_close(c);
}

/* Send an error generated by sluice: a line of text saying STATUS and
 * DETAIL. */
static void
send_error(struct sl_conn *c, int status, const char *detail)
{
	char body[256];
	int n;

	n = snprintf(body, sizeof body, "%d %s%s%s\n", status,
	    sl_http_reason(status), detail ? ": " : "", detail ? detail : "");
	if (n < 0 || (size_t)n >= sizeof body)
		n = (int)sizeof body - 1;
	send_own(
	    c, status, "text/plain; charset=utf-8", body, (size_t)n, detail);
}

/* Count a refused request head in the worker's counters. */
static void
count_refusal(struct sl_worker *w, int status)
{
	switch (status) {
	case 431:
		SL_STAT_INC(w->wstats.header_too_large);
		break;
	case 501:
	case 505:
		SL_STAT_INC(w->wstats.not_implemented);
		break;
	case 417:
		SL_STAT_INC(w->wstats.expectation_failed);
		break;
	default:
		SL_STAT_INC(w->wstats.bad_request);
		break;
	}
}

/* Refuse a request head larger than max_header_size: 414 when its
 * request line alone is (RFC 9112 3: a target longer than the server
 * parses), else 431; 501 when its first word is longer than any method
 * (RFC 9112 3). Leading empty lines (RFC 9112 2.2) are skipped. */
static void
refuse_large_head(struct sl_conn *c, struct evbuffer *in)
{
	struct evbuffer_ptr from, lf;
	size_t len = evbuffer_get_length(in), i = 0;
	char ch, method[SL_METHOD_MAX + 1];

	while (i < len) {
		evbuffer_ptr_set(in, &from, i, EVBUFFER_PTR_SET);
		if (evbuffer_copyout_from(in, &from, &ch, 1) != 1 ||
		    (ch != '\r' && ch != '\n'))
			break;
		i++;
	}
	evbuffer_ptr_set(in, &from, i, EVBUFFER_PTR_SET);
	if (evbuffer_copyout_from(in, &from, method, sizeof method) ==
	        sizeof method &&
	    memchr(method, ' ', sizeof method) == NULL) {
		count_refusal(c->w, 501);
		send_error(c, 501, "method not implemented");
		return;
	}
	lf = evbuffer_search(in, "\n", 1, &from);
	count_refusal(c->w, 431);
	if (lf.pos < 0 || (size_t)lf.pos > gconf(c)->max_header_size)
		send_error(c, 414, "request target too long");
	else
		send_error(c, 431, "request head too large");
}

/* Whether the request line in IN is whole and ends in no version:
 * HTTP/0.9's "GET /x", which would otherwise wait for a blank line. The
 * version is the last word, and "HTTP/1.1" is 8 bytes. */
static bool
line_without_version(struct evbuffer *in)
{
	struct evbuffer_ptr lf, from;
	char tail[16];
	ev_ssize_t got = evbuffer_copyout(in, tail, sizeof tail);
	size_t n = got > 0 ? (size_t)got : 0, i, start = 0;

	/* The empty lines before a request (a CR and its LF can come in
	 * two reads) are not its line. */
	while (start < n && (tail[start] == '\r' || tail[start] == '\n'))
		start++;
	if (start == n)
		return false;
	evbuffer_ptr_set(in, &from, start, EVBUFFER_PTR_SET);
	lf = evbuffer_search(in, "\n", 1, &from);
	if (lf.pos < 0)
		return false;
	n = (size_t)lf.pos - start < sizeof tail ? (size_t)lf.pos - start
	                                         : sizeof tail;
	evbuffer_ptr_set(in, &from, (size_t)lf.pos - n, EVBUFFER_PTR_SET);
	if (evbuffer_copyout_from(in, &from, tail, n) != (ev_ssize_t)n)
		return false;
	for (i = n; i > 0 && tail[i - 1] != ' '; i--)
		;
	return i == 0 || n - i < 5 || memcmp(tail + i, "HTTP/", 5) != 0;
}

/* Bytes that cannot begin a request (a method is a token, RFC 9112 3),
 * or a whole request line without a version, get their 400 at once, not
 * after header_timeout: a TLS handshake sent to a plain listener, most
 * often, which is named. False when they may still begin one. */
static bool
not_http(struct sl_conn *c, struct evbuffer *in)
{
	unsigned char b[2] = {0, 0};
	const char *why;

	evbuffer_copyout(in, b, sizeof b);
	if (sl_http_is_tchar(b[0]) || b[0] == '\r' || b[0] == '\n') {
		if (!line_without_version(in))
			return false;
		why = "no HTTP version in the request line (HTTP/0.9 is not "
		      "served)";
	} else if (b[0] == 0x16 && b[1] == 0x03) {
		why = "a TLS handshake on a plain HTTP listener: use http://, "
		      "or tls_cert on the listener";
	} else {
		why = "not an HTTP request";
	}
	count_refusal(c->w, 400);
	send_error(c, 400, why);
	return true;
}

/* Split the request target into host (absolute-form) and path; OPTIONS:
 * the method is OPTIONS; NORMALIZE: resolve the path's dot-segments. */
static void
target_parts(char *t, size_t tlen, bool options, bool normalize,
    const char **auth, size_t *auth_len, const char **path, size_t *path_len)
{
	char *p, *a, *end = t + tlen;

	*auth = NULL;
	*auth_len = 0;
	if (t[0] == '/' || t[0] == '*') {
		*path = t;
		*path_len = normalize ? sl_http_normalize_path(t, tlen) : tlen;
		return;
	}
	p = memchr(t, ':', tlen); /* scheme:// was checked by the parser */
	a = p += 3;
	while (p < end && *p != '/' && *p != '?')
		p++;
	*auth = a;
	*auth_len = (size_t)(p - a);
	if (p == end) {
		/* "OPTIONS http://host" asks about the server as a whole:
		 * "OPTIONS *" in origin-form (RFC 9112 3.2.4). */
		*path = options ? "*" : "/";
		*path_len = 1;
	} else if (*p == '?') {
		/* "http://host?q" is "/?q" in origin-form (RFC 9112 3.2.1).
		 * The scheme is of no further use: the authority slides one
		 * byte into it to make room for the slash. */
		memmove(a - 1, a, *auth_len);
		*auth = a - 1;
		p[-1] = '/';
		*path = p - 1;
		*path_len = (size_t)(end - p) + 1;
	} else {
		*path = p;
		*path_len = normalize
		    ? sl_http_normalize_path(p, (size_t)(end - p))
		    : (size_t)(end - p);
	}
}

/* Host without port, and without the root's dot ("example.com." is
 * "example.com"), for matching. */
static void
host_only(const char *h, size_t len, const char **host, size_t *host_len)
{
	size_t i;

	*host = h;
	if (len > 0 && h[0] == '[') {
		for (i = 0; i < len && h[i] != ']'; i++)
			;
		*host_len = i < len ? i + 1 : len;
		return;
	}
	for (i = 0; i < len && h[i] != ':'; i++)
		;
	if (i > 1 && h[i - 1] == '.')
		i--;
	*host_len = i;
}

/*
 * Write the request head for the upstream into O: origin-form target,
 * hop-by-hop headers removed, X-Forwarded-For/-Proto and Via added,
 * X-Client-Cert-* replaced by sluice's own on listeners that verify
 * client certificates (removed on all others), and an OPTIONS or TRACE
 * request's Max-Forwards (MF, above 0; else -1) counted down.
 */
static void
build_request_head(struct sl_conn *c, const struct sl_http_head *head,
    const char *base, const char *auth, size_t auth_len, const char *path,
    size_t path_len, const struct sl_tls_cert_headers *cert, int64_t mf,
    struct outbuf *o)
{
	const struct sl_service_conf *sc = c->svc->conf;
	bool other = (head->conn_tokens & SL_CONN_OTHER) != 0;
	bool host_done = false, xff = false, via = false;
	bool xff_hop = false, via_hop = false;
	size_t secret_len = sc->override_secret != NULL
	    ? strlen(sc->override_secret_header)
	    : 0;
	/* With overrides on, an override header is forwarded only to the
	 * version it proved itself for (not when it did not, nor to the
	 * stable version a fallback chose instead): an origin must not
	 * take it for the version that serves. */
	size_t unproven_len =
	    (sc->override_secret != NULL || sc->noverride_networks > 0) &&
	        (c->pick.reason != SL_PICK_OVERRIDE ||
	            c->ver != &c->svc->versions[c->pick.version])
	    ? strlen(sc->override_header)
	    : 0;
	uint32_t i;

	ob_str(o, llhttp_method_name((llhttp_method_t)head->method));
	OB_LIT(o, " ");
	ob_add(o, path, path_len);
	OB_LIT(o, " HTTP/1.1\r\n");
	for (i = 0; i < head->nhdrs; i++) {
		switch ((enum sl_hdr_kind)head->kinds[i]) {
		case SL_HDR_HOST:
			host_done = true;
			if (auth != NULL) {
				OB_LIT(o, "Host: ");
				ob_add(o, auth, auth_len);
				OB_LIT(o, "\r\n");
				continue;
			}
			break;
		case SL_HDR_CONNECTION:
		case SL_HDR_KEEP_ALIVE:
		case SL_HDR_PROXY_CONNECTION:
		case SL_HDR_TE:
		case SL_HDR_X_FORWARDED_PROTO:
		case SL_HDR_X_CLIENT_CERT:
			continue;
		case SL_HDR_EXPECT:
			/* An HTTP/1.0 client's expectation is ignored (RFC
			 * 9110 10.1.1): the HTTP/1.1 request to the origin
			 * must not make it wait for a 100. */
			if (head->minor == 0)
				continue;
			break;
		case SL_HDR_UPGRADE:
			if (!head->upgrade)
				continue;
			/* Named in Connection, but it is what the upgrade
			 * asks the origin for: it goes on. */
			ob_header(o, head, base, i);
			continue;
		case SL_HDR_X_FORWARDED_FOR:
			/* Merged below, unless Connection names it: then it
			 * is hop-by-hop, and only sluice's goes on. */
			xff = true;
			xff_hop |= other && named_in_connection(head, base, i);
			continue;
		case SL_HDR_VIA:
			via = true;
			via_hop |= other && named_in_connection(head, base, i);
			continue;
		default:
			break;
		}
		if (other && named_in_connection(head, base, i))
			continue;
		if (secret_len > 0 &&
		    sl_http_hdr_is(
		        head, base, i, sc->override_secret_header, secret_len))
			continue;
		if (unproven_len > 0 &&
		    sl_http_hdr_is(
		        head, base, i, sc->override_header, unproven_len))
			continue;
		if (mf > 0 &&
		    sl_http_hdr_is(head, base, i, "max-forwards", 12)) {
			OB_LIT(o, "Max-Forwards: ");
			ob_uint(o, (unsigned long)(mf - 1));
			OB_LIT(o, "\r\n");
			continue;
		}
		ob_header(o, head, base, i);
	}
	if (!host_done) {
		OB_LIT(o, "Host: ");
		if (auth != NULL)
			ob_add(o, auth, auth_len);
		else if (sc->nhosts > 0)
			ob_str(o, sc->hosts[0]);
		else
			ob_str(o, c->srv->addr.text);
		OB_LIT(o, "\r\n");
	}
	if (head->upgrade)
		OB_LIT(o, "Connection: upgrade\r\n");
	if (xff && !xff_hop)
		ob_merged(o, head, base, SL_HDR_X_FORWARDED_FOR,
		    "X-Forwarded-For", c->ip, c->ip_len);
	else {
		OB_LIT(o, "X-Forwarded-For: ");
		ob_add(o, c->ip, c->ip_len);
		OB_LIT(o, "\r\n");
	}
	if (c->tls) {
		OB_LIT(o, "X-Forwarded-Proto: https\r\n");
		if (cert != NULL)
			ob_add(o, cert->text, cert->len);
	} else
		OB_LIT(o, "X-Forwarded-Proto: http\r\n");
	ob_via(o, head, base, via && !via_hop);
	OB_LIT(o, "\r\n");
}

/*
 * Write the response head for the client into O: hop-by-hop headers
 * removed, Via added, plus sluice's own (version, sticky cookie,
 * Connection).
 */
static void
build_response_head(struct sl_conn *c, const struct sl_http_head *head,
    const char *base, struct outbuf *o)
{
	bool other = (head->conn_tokens & SL_CONN_OTHER) != 0;
	bool via = false, via_hop = false, date = false;
	bool expose = c->svc != NULL && c->svc->conf->expose_version;
	/* RFC 9110 8.6, RFC 9112 6.1: a 1xx or 204 has no content and must
	 * not carry framing headers, whatever the origin sent. */
	bool no_framing = head->status < 200 || head->status == 204;
	uint32_t i;

	OB_LIT(o, "HTTP/1.1 ");
	ob_uint(o, head->status);
	OB_LIT(o, " ");
	if (head->target_len > 0)
		ob_add(o, base + head->target_off, head->target_len);
	else
		ob_str(o, sl_http_reason(head->status));
	OB_LIT(o, "\r\n");
	for (i = 0; i < head->nhdrs; i++) {
		switch ((enum sl_hdr_kind)head->kinds[i]) {
		case SL_HDR_CONNECTION:
		case SL_HDR_KEEP_ALIVE:
		case SL_HDR_PROXY_CONNECTION:
		case SL_HDR_TE:
			continue;
		case SL_HDR_UPGRADE:
			if (head->status != 101)
				continue;
			ob_header(o, head, base, i);
			continue;
		case SL_HDR_TRANSFER_ENCODING:
			/* RFC 9112 6.1: none to an HTTP/1.0 client (a body
			 * it could not read is a 502 before this; a HEAD
			 * answer has none). */
			if (c->dechunk || no_framing || c->req_minor == 0)
				continue;
			break;
		case SL_HDR_CONTENT_LENGTH:
			if (no_framing)
				continue;
			break;
		case SL_HDR_DATE:
			date = true;
			break;
		case SL_HDR_X_SLUICE_VERSION:
			if (expose)
				continue; /* sluice's own, added below */
			break;
		case SL_HDR_VIA:
			/* Named in Connection: hop-by-hop, not merged. */
			via = true;
			via_hop |= other && named_in_connection(head, base, i);
			continue;
		default:
			break;
		}
		if (other && named_in_connection(head, base, i))
			continue;
		ob_header(o, head, base, i);
	}
	if (head->status >= 100 && head->status < 200) {
		if (head->status == 101)
			OB_LIT(o, "Connection: upgrade\r\n");
		OB_LIT(o, "\r\n");
		return;
	}
	ob_via(o, head, base, via && !via_hop);
	if (!date) {
		/* RFC 9110 6.6.1: a recipient with a clock adds the Date an
		 * answer forwarded without one lacks. */
		OB_LIT(o, "Date: ");
		ob_str(o, worker_date(c->w));
		OB_LIT(o, "\r\n");
	}
	if (expose) {
		OB_LIT(o, "X-Sluice-Version: ");
		ob_str(o, c->ver->name);
		OB_LIT(o, "\r\n");
	}
	if (c->pick.set_cookie) {
		OB_LIT(o, "Set-Cookie: ");
		ob_str(o, c->svc->conf->sticky_cookie);
		OB_LIT(o, "=");
		ob_uint(o, c->pick.bucket);
		OB_LIT(o,
		    "; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax\r\n");
	}
	if (!c->client_keepalive)
		OB_LIT(o, "Connection: close\r\n");
	else if (c->req_minor == 0)
		OB_LIT(o, "Connection: keep-alive\r\n");
	OB_LIT(o, "\r\n");
}

/* Start O on the worker's scratch buffer, with room for at least N
 * bytes. */
static bool
scratch_outbuf(struct sl_worker *w, size_t n, struct outbuf *o)
{
	char *p;

	if (w->scratch_size < n) {
		p = realloc(w->scratch, n);
		if (p == NULL)
			return false;
		w->scratch = p;
		w->scratch_size = n;
	}
	o->p = w->scratch;
	o->len = 0;
	o->cap = w->scratch_size;
	o->overflow = false;
	return true;
}

/* Timeouts of the upstream while the response head is awaited:
 * response_timeout runs from the end of the request; while the client's
 * body is still coming the origin is not expected to answer (the client's
 * body_timeout watches that side). body_timeout for the origin to take
 * the request. */
static void
await_response_timeouts(struct sl_conn *c)
{
	const struct sl_global_conf *g = gconf(c);

	/* A client that sent Expect: 100-continue may wait for the origin
	 * before sending its body: the origin must answer (100, or a final
	 * status) within response_timeout, and the wait is not the
	 * client's to time out (it got 408, the origin's hang uncounted). */
	sl_io_set_timeouts(&c->up->io,
	    c->req_body_done || c->req_expect ? g->response_timeout_ms : 0,
	    g->body_timeout_ms);
	c->resp_deadline_ms =
	    (c->req_body_done || c->req_expect) && g->response_timeout_ms > 0
	    ? now_ms(c->w) + g->response_timeout_ms
	    : 0;
}

/* The origin answered the client's Expect: 100-continue (or the client
 * sent its body without waiting): from now on the body is the client's
 * to send, on its body_timeout, and the response waits for its end. */
static void
expect_answered(struct sl_conn *c)
{
	c->req_expect = false;
	if (c->req_body_done)
		return;
	c->body_from = req_clock(c, now_us(c->w)); /* it waited for the 100 */
	sl_io_set_timeouts(
	    &c->io, gconf(c)->body_timeout_ms, gconf(c)->body_timeout_ms);
	/* Only while the response head is awaited: a response body
	 * streaming already has its own timeouts (resetting them left a
	 * stalled origin with none). */
	if (c->up != NULL && c->up->connected && c->resp_state == RESP_HEAD)
		await_response_timeouts(c);
}

/* Hand an upstream connection to this request. */
static void
attach_upstream(struct sl_conn *c, struct sl_upstream *up)
{
	c->up = up;
	c->up_scan = 0;
	c->up_read_paused = false;
	up->requests++;
	sl_io_setcb(&up->io, up_read_cb, up_write_cb, up_event_cb, c);
	sl_io_set_write_low(&up->io, 0);
	if (up->connected)
		await_response_timeouts(c);
	sl_io_enable_read(&up->io);
}

/* Stop reading SRC while DST's output is above the high-water mark. */
static void
apply_backpressure(struct sl_io *src, struct sl_io *dst, bool *paused)
{
	if (sl_io_output_length(dst) > SL_HIGH_WATER) {
		sl_io_disable_read(src);
		sl_io_set_write_low(dst, SL_HIGH_WATER / 2);
		*paused = true;
	}
}

/* DST drained: let SRC read again. */
static void
release_backpressure(struct sl_io *src, struct sl_io *dst, bool *paused)
{
	if (!*paused)
		return;
	*paused = false;
	sl_io_set_write_low(dst, 0);
	sl_io_enable_read(src);
}

/* The client's bytes wait for the origin to read: that time of the
 * upload is the origin's, not the client's. */
static void
hold_client(struct sl_conn *c)
{
	bool was = c->client_read_paused;

	apply_backpressure(&c->io, &c->up->io, &c->client_read_paused);
	if (!was && c->client_read_paused)
		c->client_paused_at = req_clock(c, now_us(c->w));
}

static void
release_client(struct sl_conn *c, struct sl_io *up_io)
{
	if (c->client_read_paused)
		c->body_from = add_sat(c->body_from,
		    req_clock(c, now_us(c->w)) - c->client_paused_at);
	release_backpressure(&c->io, up_io, &c->client_read_paused);
}

/* The origin's bytes wait for the client to read: that time is the
 * client's. */
static void
hold_origin(struct sl_conn *c)
{
	bool was = c->up_read_paused;

	apply_backpressure(&c->up->io, &c->io, &c->up_read_paused);
	if (!was && c->up_read_paused)
		c->up_paused_at = req_clock(c, now_us(c->w));
}

static void
release_origin(struct sl_conn *c)
{
	if (c->up_read_paused)
		c->client_us = add_sat(
		    c->client_us, req_clock(c, now_us(c->w)) - c->up_paused_at);
	release_backpressure(&c->up->io, &c->io, &c->up_read_paused);
}

/* Forward buffered request body bytes to the upstream. */
static void
forward_request_body(struct sl_conn *c)
{
	struct evbuffer *in = sl_io_input(&c->io);
	size_t before = evbuffer_get_length(in);
	const char *why = NULL;
	int r;

	if (c->req_body_done || c->up == NULL)
		return;
	r = sl_http_forward_body(&c->up->req_parser, in,
	    sl_io_output(&c->up->io), false, &c->up->req_ext, &why);
	if (c->vs != NULL)
		SL_STAT_ADD(c->vs->bytes_in, before - evbuffer_get_length(in));
	if (r < 0) {
		SL_STAT_INC(c->w->wstats.bad_request);
		c->client_keepalive = false;
		if (c->resp_state == RESP_HEAD)
			send_error(c, 400, why);
		else
			conn_close(c);
		return;
	}
	if (r == 1) {
		uint32_t done = req_clock(c, bytes_in_by(c));

		if (done > c->body_from)
			c->client_us =
			    add_sat(c->client_us, done - c->body_from);
		c->req_body_done = true;
		c->req_expect = false;
		/* Only the response matters now. */
		sl_io_set_timeouts(&c->io, 0, gconf(c)->body_timeout_ms);
		if (c->resp_state != RESP_BODY && c->up->connected)
			await_response_timeouts(c);
		return;
	}
	if (c->req_expect && evbuffer_get_length(in) < before)
		expect_answered(c); /* the client did not wait */
	hold_client(c);
	/* A reset that came with the body's bytes makes no edge of its own
	 * (epoll's EPOLLERR reaches us as a plain read): look for it now,
	 * or the request would wait for body_timeout. */
	if (!c->client_read_paused)
		sl_io_check_end(&c->io);
}

/* The Max-Forwards of a request (RFC 9110 7.6.2): -1 when it has none,
 * -2 when it is not one decimal number (or comes twice), else its value
 * (at most UINT32_MAX). */
static int64_t
max_forwards(const struct sl_http_head *head, const char *base)
{
	int64_t v = -1;
	uint32_t i, j;

	for (i = 0; i < head->nhdrs; i++) {
		const struct sl_http_hdr *h = &head->hdrs[i];

		if (!sl_http_hdr_is(head, base, i, "max-forwards", 12))
			continue;
		if (v != -1 || h->value_len == 0)
			return -2;
		v = 0;
		for (j = 0; j < h->value_len; j++) {
			char d = base[h->value_off + j];

			if (d < '0' || d > '9')
				return -2;
			v = v * 10 + (d - '0');
			if (v > UINT32_MAX)
				v = UINT32_MAX;
		}
	}
	return v;
}

/* Is header I of a request one a TRACE must not echo (RFC 9110 9.3.8:
 * credentials, a script could read an HttpOnly cookie in the echo; and
 * any service's override secret, which a front proxy may add)? */
static bool
trace_hides(const struct sl_http_head *head, const char *base, uint32_t i,
    const struct sl_route_table *t)
{
	size_t k;

	if (head->kinds[i] == SL_HDR_COOKIE ||
	    sl_http_hdr_is(head, base, i, "authorization", 13) ||
	    sl_http_hdr_is(head, base, i, "proxy-authorization", 19))
		return true;
	for (k = 0; k < t->nservices; k++) {
		const struct sl_service_conf *sc = t->services[k].conf;

		if (sc->override_secret != NULL &&
		    sl_http_hdr_is(head, base, i, sc->override_secret_header,
		        strlen(sc->override_secret_header)))
			return true;
	}
	return false;
}

/*
 * Answer an OPTIONS or TRACE request with Max-Forwards: 0 as its final
 * recipient (RFC 9110 7.6.2): OPTIONS with an empty 200, TRACE with the
 * request as received (message/http), less its credentials.
 */
static void
answer_final(struct sl_conn *c, const struct sl_http_head *head,
    const char *base, size_t head_len)
{
	struct sl_worker *w = c->w;
	struct sl_route_table *t;
	struct outbuf o;
	uint32_t i;

	SL_STAT_INC(w->wstats.max_forwards);
	c->client_keepalive &= c->req_body_done;
	if (head->method == HTTP_OPTIONS) {
		evbuffer_drain(sl_io_input(&c->io), head_len);
		send_own(c, 200, NULL, "", 0, "OPTIONS, Max-Forwards: 0");
		return;
	}
	/* A line may grow by the space after its colon: twice the head. */
	if (!scratch_outbuf(w, head_len * 2 + 64, &o)) {
		conn_close(c);
		return;
	}
	OB_LIT(&o, "TRACE ");
	ob_add(&o, base + head->target_off, head->target_len);
	OB_LIT(&o, " HTTP/1.");
	ob_uint(&o, head->minor);
	OB_LIT(&o, "\r\n");
	t = sl_worker_hold_table(w);
	for (i = 0; i < head->nhdrs; i++) {
		if (!trace_hides(head, base, i, t))
			ob_header(&o, head, base, i);
	}
	sl_worker_release_table(w, t);
	OB_LIT(&o, "\r\n");
	/* The echo is made from the head: it goes only now. */
	evbuffer_drain(sl_io_input(&c->io), head_len);
	send_own(c, 200, "message/http", o.p, o.overflow ? 0 : o.len,
	    "TRACE, Max-Forwards: 0");
}

/* Start a request whose head (HEAD_LEN bytes) is complete in the input. */
static void
start_request(struct sl_conn *c, size_t head_len)
{
	struct sl_worker *w = c->w;
	struct evbuffer *in = sl_io_input(&c->io);
	struct sl_http_head *head = w->scratch_head;
	struct sl_route_request rr;
	struct sl_http_error err;
	const struct sl_route_server *srv;
	struct sl_upstream *up;
	const char *base, *auth, *path, *host = NULL;
	size_t auth_len, path_len, host_len = 0;
	struct outbuf o;
	const struct sl_tls_cert_headers *cert;
	int64_t mf = -1;
	bool reused;

	SL_STAT_INC(w->wstats.requests);
	c->served++;
	base = (const char *)evbuffer_pullup(in, (ev_ssize_t)head_len);
	if (base == NULL) {
		conn_close(c);
		return;
	}
	c->req_method = HTTP_GET;
	c->client_keepalive = false;
	c->req_body_done = true;
	c->attempts = 0;
	head->max_hdrs = gconf(c)->max_headers;
	if (sl_http_parse_head(
	        &w->req_parser, base, head_len, -1, head, &err) != 0) {
		count_refusal(w, err.status);
		c->state = CONN_HEAD;
		send_error(c, err.status, err.reason);
		return;
	}
	if (sl_alog_fd >= 0) {
		/* No memory for it: the request goes on, its fields missing
		 * from its line. */
		c->alog = sl_alog_req_new(
		    llhttp_method_name((llhttp_method_t)head->method),
		    head->host_idx >= 0
		        ? base + head->hdrs[head->host_idx].value_off
		        : NULL,
		    head->host_idx >= 0 ? head->hdrs[head->host_idx].value_len
		                        : 0,
		    base + head->target_off, head->target_len);
		if (c->alog == NULL)
			SL_STAT_INC(w->wstats.access_log_dropped);
	}
	if (c->client_eof && head->has_body &&
	    !sl_http_body_buffered(&w->req_parser, in, head_len)) {
		/* Pipelined before the client's EOF, with part of its
		 * body: it can never be complete, so it is not forwarded.
		 * The response before it may still be on its way out. */
		SL_STAT_INC(w->wstats.client_aborts);
		sl_log_debug("client %s: request body cut by the EOF", c->ip);
		c->client_keepalive = false;
		close_when_sent(c);
		return;
	}
	c->req_method = head->method;
	c->req_minor = head->minor;
	/* Its head's arrival was the client's time. */
	c->client_us = c->body_from = req_clock(c, bytes_in_by(c));
	c->client_keepalive = head->keep_alive && !w->stopping;
	c->req_body_done = !head->has_body;
	c->req_upgrade = head->upgrade;
	c->req_protocols =
	    head->upgrade ? sl_http_upgrade_protocols(head, base) : 0;
	/* HTTP/1.0 clients do not wait for 100 (RFC 9110 10.1.1). */
	c->req_expect =
	    head->expect_continue && head->minor > 0 && !c->req_body_done;
	c->retried = false;
	c->dechunk = false;
	c->eof_body = false;
	memset(&c->pick, 0, sizeof c->pick);

	if (c->addr_limit == ADDR_OVER) {
		/* Its address holds every connection it may: answered, and
		 * closed, so that the client goes on with one it has (any
		 * request: one sluice would answer itself, as OPTIONS with
		 * Max-Forwards: 0, would keep the connection). */
		c->state = CONN_UPSTREAM;
		c->table = sl_worker_hold_table(w);
		SL_STAT_INC(w->wstats.client_conn_limit);
		sl_log_limited(&w->client_limit_log, 0,
		    "client %s: over max_connections_per_client (%u): its "
		    "requests answered 429",
		    c->ip, gconf(c)->max_conns_per_client);
		evbuffer_drain(in, head_len);
		c->client_keepalive = false;
		send_error(c, 429,
		    "too many connections from this address "
		    "(max_connections_per_client)");
		return;
	}

	/* OPTIONS and TRACE go no further than Max-Forwards says. */
	if (head->method == HTTP_OPTIONS || head->method == HTTP_TRACE) {
		mf = max_forwards(head, base);
		if (mf == -2) {
			count_refusal(w, 400);
			send_error(c, 400, "invalid Max-Forwards");
			return;
		}
		if (mf == 0) {
			c->state = CONN_UPSTREAM;
			answer_final(c, head, base, head_len);
			return;
		}
	}

	target_parts((char *)base + head->target_off, head->target_len,
	    head->method == HTTP_OPTIONS, gconf(c)->normalize_path, &auth,
	    &auth_len, &path, &path_len);
	if (auth != NULL)
		host_only(auth, auth_len, &host, &host_len);
	else if (head->host_idx >= 0)
		host_only(base + head->hdrs[head->host_idx].value_off,
		    head->hdrs[head->host_idx].value_len, &host, &host_len);

	c->state = CONN_UPSTREAM;
	c->table = sl_worker_hold_table(w);
	/* OPTIONS * asks about the server as a whole: it goes to the
	 * service that serves the host's root, and is forwarded as is. */
	c->svc = path_len == 1 && path[0] == '*'
	    ? sl_route_match(c->table, host, host_len, "/", 1)
	    : sl_route_match(c->table, host, host_len, path, path_len);
	if (c->svc == NULL) {
		SL_STAT_INC(w->wstats.no_route);
		evbuffer_drain(in, head_len);
		send_error(c, 404, "no service matches this request");
		return;
	}
	rr.host = host;
	rr.host_len = host_len;
	rr.path = path;
	rr.path_len = path_len;
	rr.client_ip = c->ip;
	rr.client_ip_len = c->ip_len;
	rr.client_addr = &c->addr.sa;
	rr.head = head;
	rr.head_base = base;
	sl_route_pick_version(c->svc, &rr, &w->rng, &c->pick);
	c->ver = &c->svc->versions[c->pick.version];
	c->vs = w->vstats[c->ver->id];
	SL_STAT_INC(c->vs->requests);
	SL_STAT_ADD(c->vs->active, 1);
	SL_STAT_ADD(c->vs->bytes_in, head_len);
	if (c->pick.reason == SL_PICK_OVERRIDE)
		SL_STAT_INC(c->vs->routed_override);
	else if (c->pick.reason == SL_PICK_PIN)
		SL_STAT_INC(c->vs->routed_pin);
	if (c->pick.override_ignored == SL_OVERRIDE_UNPROVEN)
		SL_STAT_INC(w->wstats.override_unproven);
	else if (c->pick.override_ignored == SL_OVERRIDE_NO_VERSION)
		SL_STAT_INC(w->wstats.override_no_version);

	srv = sl_upstream_pick(w, c->ver, now_ms(w), SL_NO_SERVER);
	if (srv == NULL && c->svc->conf->fallback_stable &&
	    c->pick.version != c->svc->stable) {
		/* fallback = stable: the user is served by stable, and the
		 * version that had no server counts a failed request, so the
		 * analyzer sees it. */
		SL_STAT_INC(c->vs->err_no_server);
		count_class(c, 503);
		SL_STAT_ADD(c->vs->active, -1);
		c->ver = &c->svc->versions[c->svc->stable];
		c->vs = w->vstats[c->ver->id];
		c->pick.set_cookie = false;
		SL_STAT_INC(c->vs->requests);
		SL_STAT_ADD(c->vs->active, 1);
		srv = sl_upstream_pick(w, c->ver, now_ms(w), SL_NO_SERVER);
	}
	if (srv == NULL) {
		SL_STAT_INC(c->vs->err_no_server);
		if (c->alog != NULL)
			c->alog->fail = ALOG_NO_SERVER;
		evbuffer_drain(in, head_len);
		c->client_keepalive &= c->req_body_done;
		send_error(c, 503, "no server available for this version");
		return;
	}
	c->srv = srv;
	c->attempts = 1;
	w->pools[srv->id]->active++;
	w->retry_tokens += gconf(c)->retry_budget_pct;
	if (w->retry_tokens > SL_RETRY_TOKENS_MAX)
		w->retry_tokens = SL_RETRY_TOKENS_MAX;

	/* Room for the head rewritten, and sluice's own lines: a client
	 * certificate's can be long (an escaped subject and issuer). */
	cert = c->tls ? sl_tls_client_cert_headers(&c->io) : NULL;
	if (!scratch_outbuf(
	        w, head_len * 2 + 4096 + (cert != NULL ? cert->len : 0), &o)) {
		conn_close(c);
		return;
	}
	build_request_head(
	    c, head, base, auth, auth_len, path, path_len, cert, mf, &o);
	if (o.overflow) {
		count_refusal(w, 431);
		c->client_keepalive = false;
		send_error(c, 431, "request head too large after rewriting");
		return;
	}
	/* A request that cannot be sent again takes a pooled connection
	 * only once it is known open. */
	up = sl_upstream_get(w, srv, origin_tls(c),
	    gconf(c)->connect_timeout_ms,
	    !c->req_body_done || c->req_upgrade || !idempotent(c->req_method),
	    &reused);
	if (up == NULL) {
		/* Out of descriptors, local ports or memory: sluice's own
		 * shortage, not the origin's failure (real refusals come
		 * from the loop). */
		SL_STAT_INC(w->wstats.upstream_local_failures);
		evbuffer_drain(in, head_len);
		c->client_keepalive &= c->req_body_done;
		send_error(c, 503,
		    "sluice cannot open a connection to the origin now (out "
		    "of file descriptors, local ports or memory, or no TLS "
		    "context for it)");
		return;
	}
	c->up_reused = reused;
	attach_upstream(c, up);
	if (!c->req_body_done)
		up->req_parser = w->req_parser; /* the body goes on from here */
	up->req_ext = 0;
	evbuffer_add(sl_io_output(&up->io), o.p, o.len);
	if (c->req_body_done && !c->req_upgrade &&
	    (reused || gconf(c)->retries > 0)) {
		/* Keep the head to retry: on a fresh connection when a
		 * pooled one turns out closed, or on another server. (No
		 * memory for it: no retry.) At least 1 KiB: a block the
		 * per-thread cache takes back, not a malloc per request. */
		c->retry_head = sl_mem_alloc(
		    o.len > SL_MEM_MIN_SIZE ? o.len : SL_MEM_MIN_SIZE);
		if (c->retry_head != NULL) {
			memcpy(c->retry_head, o.p, o.len);
			c->retry_len = (uint32_t)o.len;
		}
	}
	evbuffer_drain(in, head_len);
	c->scan = 0;
	c->resp_state = RESP_HEAD;
	if (c->req_body_done)
		sl_io_set_timeouts(&c->io, 0, gconf(c)->body_timeout_ms);
	else {
		/* A client waiting for 100 Continue is not slow. */
		sl_io_set_timeouts(&c->io,
		    c->req_expect ? 0 : gconf(c)->body_timeout_ms,
		    gconf(c)->body_timeout_ms);
		forward_request_body(c);
	}
}

/*
 * Drop the empty lines (CRLF, or a bare LF) at the start of IN that a
 * client may send before a request (RFC 9112 2.2), so that they start
 * none: its clock and header_timeout start with its first byte. A lone
 * CR waits for what follows it. Is anything else buffered?
 */
static bool
skip_empty_lines(struct evbuffer *in)
{
	struct evbuffer_iovec v;
	char b[2];

	if (evbuffer_peek(in, 1, NULL, &v, 1) < 1)
		return false;
	if (*(const char *)v.iov_base != '\r' &&
	    *(const char *)v.iov_base != '\n')
		return true;
	for (;;) {
		if (evbuffer_copyout(in, b, 2) < 1)
			return false;
		if (b[0] == '\n')
			evbuffer_drain(in, 1);
		else if (b[0] == '\r' && evbuffer_get_length(in) >= 2 &&
		    b[1] == '\n')
			evbuffer_drain(in, 2);
		else
			return true;
	}
}

/* Read request heads while the connection is between requests. */
static void
client_process(struct sl_conn *c)
{
	struct evbuffer *in;
	size_t len, end;

	while (!c->closed && (c->state == CONN_IDLE || c->state == CONN_HEAD)) {
		bool turn = false; /* its turn came in this pass */

		in = sl_io_input(&c->io);
		len = evbuffer_get_length(in);
		if (len == 0)
			return;
		if (c->state == CONN_IDLE &&
		    sl_io_output_length(&c->io) > SL_HIGH_WATER) {
			/* A client that pipelines and does not read its
			 * answers: they would pile up without bound. The
			 * next request waits until they drain (the write
			 * callback comes back here). */
			sl_io_disable_read(&c->io);
			sl_io_set_write_low(&c->io, SL_HIGH_WATER / 2);
			c->pipeline_paused = true;
			return;
		}
		if (c->state == CONN_IDLE) {
			uint64_t now = now_us(c->w);

			if (!skip_empty_lines(in)) {
				c->next_read_us = 0; /* they were all */
				return;
			}
			len = evbuffer_get_length(in);
			c->state = CONN_HEAD;
			c->req_start_us = c->next_read_us != 0 ? c->next_read_us
			    : c->read_us != 0                  ? c->read_us
			                                       : now;
			c->next_read_us = 0;
			c->head_since_ms = now / 1000;
			c->scan = 0;
			turn = true;
			sl_io_set_timeouts(&c->io, gconf(c)->header_timeout_ms,
			    gconf(c)->body_timeout_ms);
		}
		end = sl_http_find_head_end(in, &c->scan);
		if (end == 0) {
			if (len > gconf(c)->max_header_size) {
				refuse_large_head(c, in);
			} else if (not_http(c, in)) {
				return;
			} else if (now_ms(c->w) >
			    c->head_since_ms + gconf(c)->header_timeout_ms) {
				SL_STAT_INC(c->w->wstats.header_timeout);
				send_error(c, 408, "request head too slow");
			} else {
				/* a reset with it would wait for the timeout */
				sl_io_check_end(&c->io);
			}
			return;
		}
		if (end > gconf(c)->max_header_size) {
			refuse_large_head(c, in);
			return;
		}
		c->whole_at_turn = turn;
		start_request(c, end);
		c->whole_at_turn = false;
	}
}

/* Both sides of a tunnel: move what is buffered, with backpressure. */
static void
tunnel_pump(struct sl_conn *c)
{
	if (evbuffer_get_length(sl_io_input(&c->io)) > 0 ||
	    evbuffer_get_length(sl_io_input(&c->up->io)) > 0)
		c->tun_last_ms = now_ms(c->w);
	evbuffer_add_buffer(sl_io_output(&c->up->io), sl_io_input(&c->io));
	evbuffer_add_buffer(sl_io_output(&c->io), sl_io_input(&c->up->io));
	hold_client(c);
	hold_origin(c);
	/* A reset that came with a side's last bytes makes no edge of its
	 * own: the side being read looks again (a tunnel would otherwise
	 * hold the other side until tunnel_timeout). */
	if (!c->client_read_paused)
		sl_io_check_end(&c->io);
	if (!c->up_read_paused)
		sl_io_check_end(&c->up->io);
}

/* End IO's output like its peer ended its input: close_notify over TLS,
 * then a FIN; IO still reads. */
static void
half_close(struct sl_io *io)
{
	sl_io_tls_close_notify(io);
	(void)shutdown(sl_io_fd(io), SHUT_WR);
}

static void tunnel_end(struct sl_conn *c);

/*
 * A tunnel side's EOF is passed on as an EOF, not a close (RFC 9110 9.3.6
 * tunnels, and what WebSocket-less upgraded protocols expect): once what
 * that side sent before it is out, the other side's output is half-closed
 * and its answers still flow back. Both EOFs end the tunnel.
 */
static void
tunnel_check(struct sl_conn *c)
{
	if (c->tun_client_eof && !c->tun_up_shut &&
	    sl_io_unsent(&c->up->io) == 0) {
		half_close(&c->up->io);
		c->tun_up_shut = true;
	}
	if (c->tun_up_eof && !c->tun_client_shut && sl_io_unsent(&c->io) == 0) {
		half_close(&c->io);
		c->tun_client_shut = true;
	}
	/* Both ended, and what the client sent is out to the origin. */
	if (c->tun_client_eof && c->tun_up_eof && c->tun_up_shut)
		tunnel_end(c);
}

/* A read timeout of a tunnel side: the tunnel is idle only if nothing
 * moved either way (one-way traffic restarted only the sending side's
 * timer, and cut a busy tunnel). Returns whether it stays open. */
static bool
tunnel_busy(struct sl_conn *c, struct sl_io *io)
{
	if (now_ms(c->w) - c->tun_last_ms >= gconf(c)->tunnel_timeout_ms)
		return false;
	sl_io_enable_read(io); /* the timeout starts again */
	return true;
}

/* The origin accepted an upgrade: from now on bytes flow both ways. */
static void
start_tunnel(struct sl_conn *c)
{
	SL_STAT_INC(c->w->wstats.upgrades);
	c->state = CONN_TUNNEL;
	c->tun_last_ms = now_ms(c->w);
	/* The request is over as far as stats and the table go; the
	 * upstream connection now belongs to the tunnel. */
	end_request(c, 101, "answered");
	sl_io_set_timeouts(
	    &c->io, gconf(c)->tunnel_timeout_ms, gconf(c)->body_timeout_ms);
	sl_io_set_timeouts(
	    &c->up->io, gconf(c)->tunnel_timeout_ms, gconf(c)->body_timeout_ms);
	sl_io_enable_read(&c->io);
	tunnel_pump(c);
}

/* One side of a tunnel closed: flush what is left, then close. */
static void
tunnel_end(struct sl_conn *c)
{
	evbuffer_add_buffer(sl_io_output(&c->up->io), sl_io_input(&c->io));
	evbuffer_add_buffer(sl_io_output(&c->io), sl_io_input(&c->up->io));
	c->client_keepalive = false;
	/* What the client sent last goes to the origin before its
	 * connection closes (best effort: what the socket takes now). */
	sl_io_try_write(&c->up->io);
	sl_upstream_free(c->up);
	c->up = NULL;
	close_when_sent(c);
}

/* The response is complete: pool the upstream, then next request. */
static void
response_done(struct sl_conn *c)
{
	bool reuse = c->up_keepalive && c->req_body_done && !c->eof_body;

	if (c->resp_ok && c->srv != NULL)
		sl_upstream_report(c->w, c->ver, c->srv, c->svc->conf,
		    SL_EJECT_NONE, now_ms(c->w));
	c->resp_ok = false;
	if (!c->req_body_done)
		c->client_keepalive = false;
	sl_upstream_release(c->up, reuse, gconf(c)->upstream_keepalive,
	    gconf(c)->keepalive_timeout_ms);
	c->up = NULL;
	end_request(c, 0, "answered");
	next_request_or_close(c);
}

/*
 * The origin failed after the response head went out: all sluice can do is
 * cut. What already arrived is flushed, then the client connection closes
 * (its framing is left incomplete, so the client sees the cut).
 */
static void
abort_response(struct sl_conn *c)
{
	sl_upstream_free(c->up);
	c->up = NULL;
	c->client_keepalive = false;
	c->cut = true; /* a TLS client must not take it for whole */
	end_request(c, 0, "cut");
	close_when_sent(c);
}

/* One upstream failure of KIND for the request's version. */
static void
count_up_fail(struct sl_conn *c, enum up_fail kind)
{
	if (c->alog != NULL)
		c->alog->fail = (uint8_t)(kind + 1);
	if (c->vs != NULL)
		SL_STAT_INC(*(
		    uint64_t *)((char *)c->vs + up_fail_answers[kind].counter));
	/* Said at the default level, at most once in 10 s per server, kind
	 * and worker: an origin going down shows in the log, and one down
	 * under load does not flood it. */
	if (c->srv != NULL && c->ver != NULL)
		sl_log_limited(&c->w->pools[c->srv->id]->fail_log[kind], 0,
		    "upstream %s/%s %s: %s", c->svc->name, c->ver->name,
		    c->srv->addr.text, up_fail_answers[kind].why);
}

/*
 * The origin failed after the response head went to the client (KIND: a
 * reset, a timeout, a malformed body): the response is cut. That is the
 * version's failure (the analyzer counts it as an error) and the server's
 * (ejection) — once: a 5xx head was both already.
 */
static void
response_cut(struct sl_conn *c, enum up_fail kind)
{
	count_up_fail(c, kind);
	if (c->vs != NULL && c->resp_ok) {
		SL_STAT_INC(c->vs->resp_cut);
		if (weights_routed(c))
			SL_STAT_INC(c->vs->groups.err[group_of(c)]);
		else
			SL_STAT_INC(c->vs->unjudged_errors);
	}
	if (c->srv != NULL && c->resp_ok)
		sl_upstream_report(c->w, c->ver, c->srv, c->svc->conf,
		    kind == FAIL_RESPONSE_TIMEOUT   ? SL_EJECT_TIMEOUT
		        : kind == FAIL_BAD_RESPONSE ? SL_EJECT_5XX
		                                    : SL_EJECT_RESET,
		    now_ms(c->w));
	c->resp_ok = false;
	abort_response(c);
}

/* Stream response body bytes to the client. */
static void
forward_response_body(struct sl_conn *c)
{
	struct evbuffer *out = sl_io_output(&c->io);
	size_t before = evbuffer_get_length(out);
	const char *why = NULL;
	int r;

	r = sl_http_forward_body(&c->up->resp_parser, sl_io_input(&c->up->io),
	    out, c->dechunk, &c->up->resp_ext, &why);
	if (c->vs != NULL)
		SL_STAT_ADD(
		    c->vs->bytes_out, evbuffer_get_length(out) - before);
	if (r < 0) {
		sl_log_debug("client %s: bad response body: %s", c->ip, why);
		response_cut(c, FAIL_BAD_RESPONSE);
		return;
	}
	if (r == 1) {
		response_done(c);
		return;
	}
	hold_origin(c);
	/* As for a request body: an origin's reset right behind part of the
	 * body is found now, not at body_timeout. */
	if (!c->up_read_paused)
		sl_io_check_end(&c->up->io);
}

/* Is a request with this method safe to send twice (RFC 9110 9.2.2)? */
static bool
idempotent(uint8_t method)
{
	switch (method) {
	case HTTP_GET:
	case HTTP_HEAD:
	case HTTP_OPTIONS:
	case HTTP_TRACE:
	case HTTP_PUT:
	case HTTP_DELETE:
		return true;
	default:
		return false;
	}
}

/* Send the request again on a new or pooled connection to SRV: the head
 * kept for retries, or (UNSENT not NULL) what a failed connect never
 * sent, its output (the head and the body so far) and its body parser's
 * state. */
static bool
resend(struct sl_conn *c, const struct sl_route_server *srv,
    struct sl_upstream *unsent)
{
	struct sl_upstream *up;
	bool reused;

	/* What a failed connect left is not kept for another go: like a
	 * request that cannot be sent twice, it takes a pooled connection
	 * only after a check says it is open. */
	up = sl_upstream_get(c->w, srv, origin_tls(c),
	    gconf(c)->connect_timeout_ms,
	    unsent != NULL || !c->req_body_done || !idempotent(c->req_method),
	    &reused);
	if (up == NULL)
		return false;
	c->up_reused = reused;
	attach_upstream(c, up);
	if (unsent == NULL) {
		evbuffer_add(
		    sl_io_output(&up->io), c->retry_head, c->retry_len);
		return true;
	}
	if (!c->req_body_done)
		up->req_parser = unsent->req_parser;
	up->req_ext = unsent->req_ext;
	evbuffer_add_buffer(sl_io_output(&up->io), sl_io_output(&unsent->io));
	return true;
}

/*
 * Retry a failed attempt on another server of the same version (never
 * another version: the analysis depends on it), within the worker's retry
 * budget. A failed connect is always safe to retry, a request with a body
 * still streaming too (UNSENT holds what the connect never sent); a reset
 * or timeout only for idempotent requests without a body. Returns true
 * when a retry is under way.
 */
static bool
retry_elsewhere(
    struct sl_conn *c, enum up_fail kind, struct sl_upstream *unsent)
{
	struct sl_worker *w = c->w;
	const struct sl_route_server *srv;

	if (c->srv == NULL || c->attempts > gconf(c)->retries ||
	    (c->retry_head == NULL && unsent == NULL) ||
	    kind == FAIL_BAD_RESPONSE || w->retry_tokens < 100 ||
	    gconf(c)->retry_budget_pct == 0)
		return false;
	if (kind != FAIL_CONNECT_REFUSED && kind != FAIL_CONNECT_TIMEOUT &&
	    kind != FAIL_TLS && !idempotent(c->req_method))
		return false;
	if (kind == FAIL_RESET && c->up_reused)
		return false; /* a stale pooled connection: handled below */
	srv = sl_upstream_pick(w, c->ver, now_ms(w), c->srv->id);
	if (srv == NULL || !resend(c, srv, unsent))
		return false;
	w->retry_tokens -= 100;
	SL_STAT_INC(w->wstats.upstream_retries);
	w->pools[c->srv->id]->active--;
	c->srv = srv;
	w->pools[srv->id]->active++;
	c->attempts++;
	return true;
}

/*
 * An upstream failed before the response head reached the client: retry a
 * stale pooled connection once, else answer 502/504. WHY details a TLS
 * failure (NULL otherwise).
 */
static void
upstream_fail_why(struct sl_conn *c, enum up_fail kind, const char *why)
{
	struct sl_worker *w = c->w;
	/* A pooled connection that closed under the request: not the
	 * origin's failure unless it ends the request. */
	bool stale = kind == FAIL_RESET && c->up_reused;
	struct sl_upstream *failed = c->up;
	char body[200];
	bool unsent, retried;

	if (c->resp_state == RESP_BODY) {
		if (kind == FAIL_RESPONSE_TIMEOUT)
			SL_STAT_INC(w->wstats.body_timeout);
		response_cut(c, kind);
		return;
	}
	c->up = NULL; /* freed once a retry has taken what it needs */
	/* Every attempt the origin failed counts for its version, retried
	 * or not (a dead server shows even while retries hide it from the
	 * clients); a pooled connection found closed only if it ends the
	 * request. */
	if (!stale) {
		count_up_fail(c, kind);
		if (c->srv != NULL)
			sl_upstream_report(w, c->ver, c->srv, c->svc->conf,
			    kind == FAIL_RESPONSE_TIMEOUT   ? SL_EJECT_TIMEOUT
			        : kind == FAIL_RESET        ? SL_EJECT_RESET
			        : kind == FAIL_BAD_RESPONSE ? SL_EJECT_5XX
			                                    : SL_EJECT_CONNECT,
			    now_ms(w));
	}
	/* A connect that failed sent nothing: a request whose head was not
	 * kept (its body was still coming) can go on elsewhere from what
	 * waits in the failed connection's output. */
	unsent = c->retry_head == NULL && !c->req_upgrade &&
	    (kind == FAIL_CONNECT_REFUSED || kind == FAIL_CONNECT_TIMEOUT);
	retried = retry_elsewhere(c, kind, unsent ? failed : NULL);
	sl_upstream_free(failed);
	if (retried)
		return;
	/* A pooled connection that closed under the request: sent again on
	 * a fresh one, unless the origin may have acted on it already and
	 * the method is not idempotent (RFC 9110 9.2.2). */
	if (stale && !c->retried && c->retry_head != NULL && c->srv != NULL &&
	    idempotent(c->req_method)) {
		struct sl_upstream *up;

		c->retried = true;
		c->attempts++;
		SL_STAT_INC(w->wstats.upstream_retries);
		/* Every idle connection to this server is suspect now. */
		while (
		    (up = TAILQ_FIRST(&w->pools[c->srv->id]->idle)) != NULL) {
			TAILQ_REMOVE(
			    &w->pools[c->srv->id]->idle, up, idle_link);
			w->pools[c->srv->id]->nidle--;
			sl_upstream_free(up);
		}
		if (resend(c, c->srv, NULL))
			return;
	}
	if (stale)
		count_up_fail(c, kind);
	if (kind == FAIL_BAD_RESPONSE)
		c->client_keepalive = false;
	if (kind == FAIL_TLS) {
		snprintf(body, sizeof body, "%s: %s", up_fail_answers[kind].why,
		    why != NULL ? why : "error");
		send_error(c, up_fail_answers[kind].status, body);
	} else
		send_error(
		    c, up_fail_answers[kind].status, up_fail_answers[kind].why);
}

static void
upstream_fail(struct sl_conn *c, enum up_fail kind)
{
	upstream_fail_why(c, kind, NULL);
}

/* Is every Transfer-Encoding of HEAD exactly "chunked"? */
static bool
te_only_chunked(const struct sl_http_head *head, const char *base)
{
	size_t i;

	for (i = 0; i < head->nhdrs; i++) {
		if (head->kinds[i] == SL_HDR_TRANSFER_ENCODING &&
		    !(head->hdrs[i].value_len == 7 &&
		        strncasecmp(
		            base + head->hdrs[i].value_off, "chunked", 7) == 0))
			return false;
	}
	return true;
}

/* Part of a response head (or an interim 1xx) came: the rest has what is
 * left of response_timeout, not a fresh one (the read timeout restarts at
 * every read). False when that is spent: the upstream has failed. */
static bool
head_deadline(struct sl_conn *c)
{
	uint64_t now = now_ms(c->w);

	if (now >= c->resp_deadline_ms) {
		upstream_fail(c, FAIL_RESPONSE_TIMEOUT);
		return false;
	}
	sl_io_set_timeouts(&c->up->io, (uint32_t)(c->resp_deadline_ms - now),
	    gconf(c)->body_timeout_ms);
	return true;
}

/* Can what has come of a response head so far start "HTTP/" (after
 * empty lines, which the parser judges)? An origin that answers something
 * else gets a 502 now, not after waiting for a blank line until
 * response_timeout. */
static bool
looks_like_status_line(struct evbuffer *in)
{
	char b[16];
	ev_ssize_t n = evbuffer_copyout(in, b, sizeof b), i = 0;

	while (i < n && (b[i] == '\r' || b[i] == '\n'))
		i++;
	if (i == n)
		return true;
	return memcmp(b + i, "HTTP/", (size_t)(n - i < 5 ? n - i : 5)) == 0;
}

/* Parse response heads: interim 1xx are passed on, 101 starts a tunnel. */
static void
handle_response_head(struct sl_conn *c)
{
	struct sl_worker *w = c->w;
	struct sl_http_head *head = w->scratch_head;
	struct sl_http_error err;
	struct evbuffer *in;
	const char *base;
	struct outbuf o;
	uint32_t protos;
	size_t end;

	for (;;) {
		in = sl_io_input(&c->up->io);
		end = sl_http_find_head_end(in, &c->up_scan);
		if (end == 0) {
			if (evbuffer_get_length(in) > SL_RESP_HEAD_MAX ||
			    !looks_like_status_line(in)) {
				upstream_fail(c, FAIL_BAD_RESPONSE);
				return;
			}
			/* A reset that came with it: a 502 now, not a 504
			 * at the deadline. */
			if (c->resp_deadline_ms == 0 || head_deadline(c))
				sl_io_check_end(&c->up->io);
			return;
		}
		/* The limit holds however the origin's writes were cut. */
		if (end > SL_RESP_HEAD_MAX) {
			upstream_fail(c, FAIL_BAD_RESPONSE);
			return;
		}
		base = (const char *)evbuffer_pullup(in, (ev_ssize_t)end);
		head->max_hdrs = SL_HTTP_MAX_FIELDS;
		if (base == NULL ||
		    sl_http_parse_head(&c->up->resp_parser, base, end,
		        c->req_method, head, &err) != 0) {
			sl_log_debug("client %s: bad response head: %s", c->ip,
			    base ? err.reason : "no memory");
			upstream_fail(c, FAIL_BAD_RESPONSE);
			return;
		}
		/* A 101 must name what it switches to, among what the
		 * request offered (RFC 9110 7.8, 15.2.2), and never h2c. */
		if (head->status == 101 &&
		    (!c->req_upgrade ||
		        (protos = sl_http_upgrade_protocols(head, base)) == 0 ||
		        (protos & ~c->req_protocols) != 0 ||
		        sl_http_upgrade_h2c(head, base) != SL_H2C_NONE)) {
			upstream_fail(c, FAIL_BAD_RESPONSE);
			return;
		}
		if (head->status >= 200) {
			c->dechunk =
			    (head->flags & F_CHUNKED) && c->req_minor == 0;
			if (c->req_minor == 0 && head->has_body &&
			    !te_only_chunked(head, base)) {
				/* gzip (chunked or not) to an HTTP/1.0
				 * client: the coding cannot be told without
				 * Transfer-Encoding, and 1.0 has none (the
				 * gzip bytes went out as plain content). */
				upstream_fail(c, FAIL_BAD_RESPONSE);
				return;
			}
			c->eof_body = head->has_body &&
			    !(head->flags & (F_CHUNKED | F_CONTENT_LENGTH));
			/* A 204 that announces content breaks RFC 9110
			 * 15.3.5: if the content comes anyway, it must not
			 * reach the next request on this connection. */
			c->up_keepalive = head->keep_alive &&
			    !(head->status == 204 &&
			        ((head->flags & F_CHUNKED) ||
			            head->content_length > 0));
			if (c->dechunk || c->eof_body)
				c->client_keepalive = false;
			/* An answer before the whole request body: the
			 * connection closes after it (RFC 9110 10.1.1: say
			 * so), and lingers for the rest of the body. */
			if (client_finished(c) || w->stopping ||
			    !c->req_body_done)
				c->client_keepalive = false;
		}
		if (!scratch_outbuf(w, end * 2 + 1024, &o)) {
			conn_close(c);
			return;
		}
		build_response_head(c, head, base, &o);
		if (o.overflow) {
			upstream_fail(c, FAIL_BAD_RESPONSE);
			return;
		}
		/* Counted once the head is sure to go out: a head refused
		 * above is the 502 that upstream_fail counts, not both. */
		if (head->status >= 200) {
			count_status(c, head->status);
			/* A 5xx counts against the server now; any other
			 * answer counts for it once it is whole
			 * (response_done): one cut mid-body is a failure. */
			c->resp_ok = head->status < 500;
			if (c->srv != NULL && !c->resp_ok)
				sl_upstream_report(w, c->ver, c->srv,
				    c->svc->conf, SL_EJECT_5XX, now_ms(w));
		}
		/* HTTP/1.0 clients get no interim responses. (Over TLS, a
		 * head and the body bytes that came with it leave in one
		 * record: io.c encrypts a small output as one.) */
		if (head->status >= 200 || head->status == 101 ||
		    c->req_minor > 0) {
			evbuffer_add(sl_io_output(&c->io), o.p, o.len);
			if (c->vs != NULL)
				SL_STAT_ADD(c->vs->bytes_out, o.len);
		}
		evbuffer_drain(in, end);
		c->up_scan = 0;
		if (head->status == 101) {
			count_status(c, 101);
			start_tunnel(c);
			return;
		}
		if (head->status < 200) {
			/* 100 answers the expectation; 103 does not. */
			if (c->req_expect && head->status == 100)
				expect_answered(c);
			/* An origin sending 1xx after 1xx to a client that
			 * does not read: the rest waits, as a body would
			 * (client_write_cb goes on). */
			hold_origin(c);
			if (c->up_read_paused)
				return;
			continue;
		}
		c->req_expect = false; /* a final answer */
		sl_io_set_timeouts(&c->up->io, gconf(c)->body_timeout_ms,
		    gconf(c)->body_timeout_ms);
		if (!head->has_body) {
			response_done(c);
			return;
		}
		c->resp_state = RESP_BODY;
		c->up->resp_ext = 0; /* a new body: its framing is read anew */
		forward_response_body(c);
		return;
	}
}

static void
up_read_cb(struct sl_io *io, void *arg)
{
	struct sl_conn *c = arg;

	if (c->state == CONN_TUNNEL) {
		tunnel_pump(c);
		return;
	}
	if (c->resp_state == RESP_HEAD)
		handle_response_head(c);
	else if (c->resp_state == RESP_BODY)
		forward_response_body(c);
	if (!c->closed && c->state == CONN_IDLE)
		client_process(c);
}

/* The upstream drained its output: the client may send more body. */
static void
up_write_cb(struct sl_io *io, void *arg)
{
	struct sl_conn *c = arg;

	release_client(c, io);
	if (c->state == CONN_UPSTREAM && !c->req_body_done)
		forward_request_body(c);
	else if (c->state == CONN_TUNNEL)
		tunnel_check(c);
}

/*
 * A TLS origin connection failed before its handshake completed: a TLS
 * failure (certificate, protocol, or the origin closing mid-handshake)
 * becomes a 502 of kind "tls". Returns false for a plain connect failure,
 * left to the caller.
 */
static bool
origin_tls_failed(struct sl_conn *c, struct sl_io *io, short what)
{
	char why[160];
	bool plaintext;

	if (!sl_tls_error(io, why, sizeof why, &plaintext) &&
	    !(what & BEV_EVENT_EOF))
		return false;
	sl_log_debug("client %s: origin %s: TLS handshake failed: %s", c->ip,
	    c->srv != NULL ? c->srv->addr.text : "?", why);
	upstream_fail_why(c, FAIL_TLS, why);
	return true;
}

static void
up_event_cb(struct sl_io *io, short what, void *arg)
{
	struct sl_conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		c->up->connected = true;
		if (c->up->tls_ctx != NULL && sl_tls_resumed(io))
			SL_STAT_INC(c->w->wstats.upstream_tls_resumed);
		await_response_timeouts(c);
		return;
	}
	if (c->state == CONN_TUNNEL) {
		if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
			c->tun_up_eof = true;
			sl_io_disable_read(io);
			tunnel_pump(c);
			tunnel_check(c);
		} else if (!((what & BEV_EVENT_TIMEOUT) &&
		               !(what & BEV_EVENT_WRITING) &&
		               tunnel_busy(c, io)))
			tunnel_end(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (!c->up->connected)
			upstream_fail(c, FAIL_CONNECT_TIMEOUT);
		else
			upstream_fail(c, FAIL_RESPONSE_TIMEOUT);
	} else if ((what & BEV_EVENT_EOF) && c->resp_state == RESP_BODY &&
	    c->eof_body) {
		/* A close-delimited body ends here: over TLS only with a
		 * close_notify (RFC 9112 section 9.8), else it was cut. */
		forward_response_body(c);
		if (!c->closed && c->resp_state == RESP_BODY) {
			bool ragged = sl_io_tls_ragged(io);

			if (!ragged &&
			    sl_http_finish_body(&c->up->resp_parser) == 1) {
				response_done(c);
			} else {
				sl_log_debug("client %s: close-delimited body "
				             "cut%s",
				    c->ip,
				    ragged ? ": TLS EOF without close_notify"
				           : "");
				upstream_fail(c, FAIL_RESET);
			}
		}
	} else if (!c->up->connected && c->up->tls_ctx != NULL &&
	    origin_tls_failed(c, io, what)) {
		/* handled: 502 (kind tls) or a retry */
	} else if (!c->up->connected) {
		upstream_fail(c, FAIL_CONNECT_REFUSED);
	} else {
		/* Bytes that came with the EOF may still complete a head. */
		if (c->resp_state == RESP_HEAD &&
		    evbuffer_get_length(sl_io_input(io)) > 0)
			c->up_reused = false;
		upstream_fail(c, FAIL_RESET);
	}
	if (!c->closed && c->state == CONN_IDLE)
		client_process(c);
}

static void
client_read_cb(struct sl_io *io, void *arg)
{
	struct sl_conn *c = arg;

	c->read_us = now_us(c->w);
	switch ((enum conn_state)c->state) {
	case CONN_IDLE:
	case CONN_HEAD:
		client_process(c);
		break;
	case CONN_UPSTREAM:
		if (!c->req_body_done) {
			forward_request_body(c);
			break;
		}
		/* The next request's bytes (empty lines are none); after an
		 * Upgrade request, perhaps the tunnel's, left as they are. */
		if (c->next_read_us == 0 && !c->req_upgrade &&
		    skip_empty_lines(sl_io_input(io)))
			c->next_read_us = c->read_us;
		if (evbuffer_get_length(sl_io_input(io)) > SL_HIGH_WATER) {
			/* Pipelined requests pile up: wait for this one. */
			sl_io_disable_read(io);
		}
		break;
	case CONN_TUNNEL:
		tunnel_pump(c);
		break;
	case CONN_CLOSING:
		evbuffer_drain(
		    sl_io_input(io), evbuffer_get_length(sl_io_input(io)));
		if (c->lingering && now_ms(c->w) >= c->linger_until_ms)
			conn_close(c);
		break;
	}
}

/* The client drained its output: resume the upstream, or finish closing. */
static void
client_write_cb(struct sl_io *io, void *arg)
{
	struct sl_conn *c = arg;
	bool held = c->up_read_paused;

	if (c->state == CONN_CLOSING) {
		if (sl_io_unsent(io) == 0)
			sent_then_close(c);
		return;
	}
	if (c->up != NULL)
		release_origin(c);
	if (c->state == CONN_TUNNEL) {
		tunnel_check(c);
		return;
	}
	if (c->state == CONN_UPSTREAM && c->resp_state == RESP_BODY &&
	    c->up != NULL)
		forward_response_body(c);
	else if (held && c->state == CONN_UPSTREAM &&
	    c->resp_state == RESP_HEAD && c->up != NULL)
		handle_response_head(c); /* the 1xx held back */
	if (c->pipeline_paused && c->state == CONN_IDLE) {
		c->pipeline_paused = false;
		sl_io_set_write_low(io, 0);
		if (!c->client_eof)
			sl_io_enable_read(io);
	}
	if (!c->closed && c->state == CONN_IDLE)
		client_process(c);
}

/* The TLS handshake took longer than header_timeout: give up. */
static void
handshake_timeout(struct sl_conn *c)
{
	SL_STAT_INC(c->w->wstats.tls_handshake_timeouts);
	sl_log_debug("client %s: TLS handshake timed out", c->ip);
	c->cut = true;
	conn_close(c);
}

static void
handshake_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	handshake_timeout(arg);
}

/*
 * Answer plain HTTP sent to a TLS port with a plain 400, best effort: the
 * rest of the request is read away first, so that closing does not reset
 * the connection before the client reads the answer. A HEAD gets the head
 * alone (RFC 9110 section 9.3.2).
 */
static void
plaintext_reply(struct sl_conn *c)
{
	static const char body[] =
	    "400 Bad Request: plain HTTP sent to a TLS port (use https)\n";
	char msg[512];
	evutil_socket_t fd = sl_io_fd(&c->io);
	char sink[4096];
	int i, m;

	if (fd < 0)
		return;
	m = snprintf(msg, sizeof msg,
	    "HTTP/1.1 400 Bad Request\r\nDate: %s\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	    worker_date(c->w), sizeof body - 1,
	    sl_tls_plaintext_head(&c->io) ? "" : body);
	if (m < 0 || (size_t)m >= sizeof msg)
		return; /* cannot happen: it is short */
	for (i = 0; i < 4; i++) {
		if (recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0)
			break;
	}
	(void)send(fd, msg, (size_t)m, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)shutdown(fd, SHUT_WR);
	log_request(c, 400, "answered");
}

/* An event on a TLS connection whose handshake is still running. */
static void
handshake_event(struct sl_conn *c, short what)
{
	struct sl_worker *w = c->w;
	char why[160];
	bool plaintext;

	if (what & BEV_EVENT_CONNECTED) {
		c->tls_done = true;
		event_free(c->hs_timer);
		c->hs_timer = NULL;
		SL_STAT_INC(w->wstats.tls_handshakes);
		if (sl_tls_resumed(&c->io))
			SL_STAT_INC(w->wstats.tls_resumed);
		/* From here on, as a new plain connection: the first
		 * request head has header_timeout. */
		sl_io_set_timeouts(&c->io, gconf(c)->header_timeout_ms,
		    gconf(c)->body_timeout_ms);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		handshake_timeout(c);
		return;
	}
	sl_tls_error(&c->io, why, sizeof why, &plaintext);
	SL_STAT_INC(w->wstats.tls_handshake_failures);
	if (sl_tls_client_cert_failed(&c->io))
		SL_STAT_INC(w->wstats.tls_client_cert_refused);
	if (plaintext) {
		SL_STAT_INC(w->wstats.tls_plaintext);
		plaintext_reply(c);
	}
	sl_log_debug("client %s: TLS handshake failed: %s", c->ip, why);
	c->cut = true;
	conn_close(c);
}

static void
client_event_cb(struct sl_io *io, short what, void *arg)
{
	struct sl_conn *c = arg;

	if (c->tls && !c->tls_done) {
		handshake_event(c, what);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (c->state == CONN_TUNNEL && !(what & BEV_EVENT_WRITING) &&
		    tunnel_busy(c, io))
			return;
		if ((what & BEV_EVENT_WRITING) || c->state == CONN_IDLE ||
		    c->state == CONN_CLOSING || c->state == CONN_TUNNEL) {
			if (what & BEV_EVENT_WRITING)
				SL_STAT_INC(c->w->wstats.body_timeout);
			else if (c->state == CONN_IDLE)
				SL_STAT_INC(c->w->wstats.idle_timeout);
			conn_close(c);
		} else if (c->state == CONN_HEAD) {
			SL_STAT_INC(c->w->wstats.header_timeout);
			send_error(c, 408, "request head too slow");
		} else if (!c->req_body_done) {
			SL_STAT_INC(c->w->wstats.body_timeout);
			c->client_keepalive = false;
			if (c->resp_state == RESP_HEAD)
				send_error(c, 408, "request body too slow");
			else
				conn_close(c);
		} else
			sl_io_enable_read(io);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		c->client_eof = true;
		switch ((enum conn_state)c->state) {
		case CONN_UPSTREAM:
			if (c->req_body_done) {
				/* Half-close after a full request: still
				 * answer it and any complete ones pipelined
				 * behind it, then close (client_finished). */
				sl_io_disable_read(io);
				return;
			}
			SL_STAT_INC(c->w->wstats.client_aborts);
			break;
		case CONN_TUNNEL:
			c->tun_client_eof = true;
			sl_io_disable_read(io);
			tunnel_pump(c);
			tunnel_check(c);
			return;
		case CONN_IDLE:
		case CONN_HEAD:
		case CONN_CLOSING:
			/* A response may still be on its way out: a client
			 * that half-closed after its request still reads it
			 * (half a head after it is dropped unanswered). The
			 * write callback closes once it is sent. */
			if (sl_io_unsent(io) > 0) {
				sl_io_disable_read(io);
				c->client_keepalive = false;
				c->state = CONN_CLOSING;
				return;
			}
			break;
		default:
			break;
		}
		conn_close(c);
		return;
	}
	/* BEV_EVENT_ERROR: the client is gone. */
	if (c->state == CONN_UPSTREAM || c->state == CONN_TUNNEL)
		SL_STAT_INC(c->w->wstats.client_aborts);
	c->cut = true;
	conn_close(c);
}

/* Take over a freshly accepted client socket. */
void
sl_conn_accept(struct sl_worker *w, evutil_socket_t fd,
    const struct sockaddr *addr, int addrlen, struct ssl_ctx_st *tls_ctx)
{
	struct sl_conn *c;
	struct timeval tv;
	int one = 1;

	c = calloc(1, sizeof *c);
	if (c == NULL) {
		evutil_closesocket(fd);
		return;
	}
	if (sl_io_init_socket(&c->io, &w->io_loop, fd) != 0) {
		evutil_closesocket(fd);
		free(c);
		return;
	}
	if (tls_ctx != NULL) {
		c->hs_timer = event_new(w->base, -1, 0, handshake_timer_cb, c);
		if (c->hs_timer == NULL ||
		    sl_io_start_tls(&c->io, sl_tls_accept_ssl(tls_ctx), true) !=
		        0) {
			sl_io_free(&c->io); /* closes FD */
			if (c->hs_timer != NULL)
				event_free(c->hs_timer);
			free(c);
			return;
		}
	}
	c->w = w;
	c->tls = tls_ctx != NULL;
	c->state = CONN_IDLE;
	if ((size_t)addrlen <= sizeof c->addr)
		memcpy(&c->addr, addr, (size_t)addrlen);
	else
		c->addr.sa.sa_family = AF_UNSPEC;
	if (addr->sa_family == AF_INET)
		inet_ntop(AF_INET,
		    &((const struct sockaddr_in *)addr)->sin_addr, c->ip,
		    sizeof c->ip);
	else if (addr->sa_family == AF_INET6) {
		const struct in6_addr *a6 =
		    &((const struct sockaddr_in6 *)addr)->sin6_addr;

		/* An IPv4 client of a dual-stack listener is still the same
		 * IPv4 user: the same sticky key and X-Forwarded-For as on an
		 * IPv4 listener, not ::ffff:a.b.c.d. */
		if (IN6_IS_ADDR_V4MAPPED(a6))
			inet_ntop(
			    AF_INET, &a6->s6_addr[12], c->ip, sizeof c->ip);
		else
			inet_ntop(AF_INET6, a6, c->ip, sizeof c->ip);
	}
	c->ip_len = (uint8_t)strlen(c->ip);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	TAILQ_INSERT_TAIL(&w->conns, c, link);
	w->nconns++;
	sl_worker_conn_opened(w);
	SL_STAT_INC(w->wstats.conns_accepted);
	SL_STAT_ADD(w->wstats.conns_active, 1);
	sl_io_setcb(
	    &c->io, client_read_cb, client_write_cb, client_event_cb, c);
	(void)sl_worker_current_table(w); /* a reload's timeouts apply */
	if (gconf(c)->max_conns_per_client > 0 &&
	    c->addr.sa.sa_family != AF_UNSPEC) {
		int r =
		    sl_climit_open(&c->addr.sa, gconf(c)->max_conns_per_client);

		c->addr_limit = r > 0 ? ADDR_COUNTED
		    : r == 0          ? ADDR_OVER
		                      : ADDR_UNCOUNTED;
	}
	sl_io_set_timeouts(
	    &c->io, gconf(c)->header_timeout_ms, gconf(c)->body_timeout_ms);
	sl_io_enable_read(&c->io);
	if (c->hs_timer != NULL) {
		/* The whole handshake, however the bytes trickle in. */
		tv.tv_sec = gconf(c)->header_timeout_ms / 1000;
		tv.tv_usec = (gconf(c)->header_timeout_ms % 1000) * 1000;
		event_add(c->hs_timer, &tv);
	}
}

/*
 * Close keep-alive connections idle between requests for at least
 * GRACE_MS. Closing a connection the client is about to reuse races with
 * its next request (it would see a reset), so while draining a busy
 * connection is instead answered once more with "Connection: close". A
 * connection that has not sent its first request yet is left to finish it
 * (or to time out): it may have been accepted from the queue a moment ago.
 */
void
sl_conn_close_idle(struct sl_worker *w, uint64_t grace_ms)
{
	struct sl_conn *c, *next;
	uint64_t now = now_ms(w);

	for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->state == CONN_IDLE && c->served > 0 &&
		    now >= c->idle_since_ms + grace_ms)
			conn_close(c);
	}
}

/* Close every connection now. */
void
sl_conn_close_all(struct sl_worker *w)
{
	struct sl_conn *c;

	while ((c = TAILQ_FIRST(&w->conns)) != NULL)
		conn_close(c);
}
