/*
 * admin.c — the admin HTTP endpoint on the control thread:
 *
 *   GET /healthz                 200 "ok" while serving
 *   GET /metrics                 Prometheus text exposition
 *   GET /stats[?seconds=N]       JSON, every service
 *   GET /stats/SERVICE[?seconds=N]
 *
 * Anything else is 404 (405 for other methods). It listens on its own
 * address (loopback by default) and shares nothing with the proxy
 * listeners, so it is never reachable as a proxy route. One request per
 * connection; requests are small and answered at once.
 *
 * Connections are few and short: at most ADMIN_MAX_CONNS open (the next
 * one evicts the oldest, which a scraper never is), each with
 * ADMIN_HEAD_S to send its head however it trickles in, so that clients
 * holding connections open cannot take the process's file descriptors
 * (and with them the proxy) nor keep scrapes out.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"
#include "proxy/http1.h"

#define ADMIN_HEAD_MAX  8192
#define ADMIN_MAX_CONNS 128
#define ADMIN_HEAD_S    10 /* seconds from accept to a whole head */
#define ADMIN_IDLE_S    5  /* seconds without a byte either way */

struct admin_conn {
	struct sl_admin *admin;
	struct bufferevent *bev;
	TAILQ_ENTRY(admin_conn) link; /* oldest first */
	uint64_t accepted_ms;         /* monotonic */
	size_t scan;
	bool done;
};

TAILQ_HEAD(admin_conns, admin_conn);

struct sl_admin {
	struct sl_accept_guard guard; /* first: see ctl.h */
	struct sl_ctl *ctl;
	struct evconnlistener *listener;
	struct sl_http_head *head;
	llhttp_t parser;
	struct admin_conns conns;
	unsigned nconns;
	uint64_t evicted, too_slow; /* for /metrics */
	struct sl_log_limit evict_log;
};

SL_ACCEPT_GUARD_FIRST(struct sl_admin, guard);

/* The reason phrase of STATUS: the proxy's table, plus the statuses only
 * the admin endpoint sends. */
static const char *
admin_reason(int status)
{
	return status == 405 ? "Method Not Allowed" : sl_http_reason(status);
}

/* Write a complete response and close once it is sent. A 405 names the
 * methods there are (RFC 9110 section 15.5.6: it must). */
static void
reply(struct admin_conn *ac, int status, const char *type, const void *body,
    size_t len, bool head_only)
{
	struct evbuffer *out = bufferevent_get_output(ac->bev);
	char date[SL_HTTP_DATE_LEN];

	sl_http_date(date, time(NULL));
	evbuffer_add_printf(out,
	    "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "%sCache-Control: no-store\r\nConnection: close\r\n\r\n",
	    status, admin_reason(status), date, type, len,
	    status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!head_only)
		evbuffer_add(out, body, len);
	ac->done = true;
	bufferevent_disable(ac->bev, EV_READ);
}

/* Reply with a JSON document (takes a reference). */
static void
reply_json(struct admin_conn *ac, int status, json_t *doc, bool head_only)
{
	char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15));
	char *lined = NULL;
	size_t n = text != NULL ? strlen(text) : 0;

	if (text != NULL && (lined = realloc(text, n + 2)) != NULL)
		text = lined;
	if (lined == NULL) {
		reply(ac, 500, "text/plain", "out of memory\n", 14, head_only);
	} else {
		text[n++] = '\n';
		reply(ac, status, "application/json", text, n, head_only);
	}
	free(text);
	json_decref(doc);
}

static void
reply_error(struct admin_conn *ac, int status, const char *msg, bool head_only)
{
	json_t *doc = json_pack("{s:b,s:s}", "ok", 0, "error", msg);

	reply_json(ac, status, doc, head_only);
}

/*
 * The window "?seconds=N" asks for (1..600) into *SECONDS; 0 when the
 * query names no seconds. -1 when it does but N is not such a number:
 * "seconds=" and a bare "seconds" included (sl_route_query skips those as
 * absent, which would answer with all-time stats), and so is a second
 * "seconds" (which one was meant?). Other parameters are ignored.
 */
static int
window_seconds(const char *path, size_t len, uint32_t *seconds)
{
	const char *q = memchr(path, '?', len), *end = path + len;
	bool found = false;

	*seconds = 0;
	for (q = q != NULL ? q + 1 : end; q < end;) {
		const char *amp = memchr(q, '&', (size_t)(end - q)), *v;
		uint32_t n = 0;

		if (amp == NULL)
			amp = end;
		if (amp - q >= 7 && memcmp(q, "seconds", 7) == 0 &&
		    ((v = q + 7) == amp || *v == '=')) {
			/* Again, no '=', no digits, more than 4 digits. */
			if (found || v == amp || amp - v == 1 || amp - v > 5)
				return -1;
			for (v++; v < amp; v++) {
				if (*v < '0' || *v > '9')
					return -1;
				n = n * 10 + (uint32_t)(*v - '0');
			}
			if (n == 0 || n > SL_WINDOW_SLOTS)
				return -1;
			*seconds = n;
			found = true;
		}
		q = amp + 1;
	}
	return 0;
}

/* Route one admin request. */
static void
serve(struct admin_conn *ac, const struct sl_http_head *head, const char *base)
{
	struct sl_ctl *ctl = ac->admin->ctl;
	const char *t = base + head->target_off;
	size_t tlen = head->target_len, plen;
	bool head_only = head->method == HTTP_HEAD;
	uint32_t seconds;
	char *err = NULL;
	json_t *doc;

	if (head->method != HTTP_GET && head->method != HTTP_HEAD) {
		reply_error(ac, 405, "only GET and HEAD", head_only);
		return;
	}
	for (plen = 0; plen < tlen && t[plen] != '?'; plen++)
		;
	if (plen == 8 && memcmp(t, "/healthz", 8) == 0) {
		reply(ac, 200, "text/plain", "ok\n", 3, head_only);
	} else if (plen == 8 && memcmp(t, "/metrics", 8) == 0) {
		struct evbuffer *body = evbuffer_new();
		size_t n;

		sl_ctl_metrics_text(ctl, body);
		n = evbuffer_get_length(body);
		reply(ac, 200, "text/plain; version=0.0.4; charset=utf-8",
		    evbuffer_pullup(body, -1), n, head_only);
		evbuffer_free(body);
	} else if ((plen == 6 && memcmp(t, "/stats", 6) == 0) ||
	    (plen > 7 && memcmp(t, "/stats/", 7) == 0)) {
		char *svc = plen > 7 ? sl_xstrndup(t + 7, plen - 7) : NULL;

		if (window_seconds(t, tlen, &seconds) != 0) {
			reply_error(ac, 400,
			    "seconds must be an integer from 1 to 600",
			    head_only);
		} else if ((doc = sl_ctl_stats_json(ctl, svc, seconds, &err)) ==
		    NULL) {
			reply_error(ac, 404, err, head_only);
			free(err);
		} else {
			reply_json(ac, 200, doc, head_only);
		}
		free(svc);
	} else {
		reply_error(ac, 404,
		    "not found: try /metrics, /stats, /stats/SERVICE, /healthz",
		    head_only);
	}
}

static void
admin_conn_free(struct admin_conn *ac)
{
	TAILQ_REMOVE(&ac->admin->conns, ac, link);
	ac->admin->nconns--;
	bufferevent_free(ac->bev);
	free(ac);
}

/*
 * Does the request line in BASE (END bytes) name a method other than GET
 * and HEAD? The parser refuses a well-formed method it does not know (and
 * CONNECT, and PRI) as 501, right for the proxy; here only GET and HEAD
 * exist, so any other method is a 405 with Allow, as README says.
 */
static bool
other_method(const char *base, size_t end)
{
	size_t i = 0, n;

	while (i < end && (base[i] == '\r' || base[i] == '\n'))
		i++; /* the empty lines the parser skips */
	for (n = 0; i + n < end && base[i + n] != ' '; n++)
		;
	return !(n == 3 && memcmp(base + i, "GET", 3) == 0) &&
	    !(n == 4 && memcmp(base + i, "HEAD", 4) == 0);
}

static void
admin_read_cb(struct bufferevent *bev, void *arg)
{
	struct admin_conn *ac = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct sl_http_error err;
	const char *base;
	size_t end;

	if (ac->done)
		return;
	end = sl_http_find_head_end(in, &ac->scan);
	if (end == 0) {
		if (evbuffer_get_length(in) > ADMIN_HEAD_MAX)
			reply_error(ac, 431, "request head too large", false);
		else if (sl_ctl_mono_ms() - ac->accepted_ms >=
		    ADMIN_HEAD_S * 1000) {
			ac->admin->too_slow++;
			reply_error(ac, 408, "request head too slow", false);
		}
		return;
	}
	base = (const char *)evbuffer_pullup(in, (ev_ssize_t)end);
	if (base == NULL) { /* out of memory */
		reply_error(ac, 503, "out of memory", false);
		return;
	}
	if (sl_http_parse_head(&ac->admin->parser, base, end, -1,
	        ac->admin->head, &err) != 0) {
		if (err.status == 501 && other_method(base, end))
			reply_error(ac, 405, "only GET and HEAD", false);
		else
			reply_error(ac, err.status, err.reason, false);
		return;
	}
	serve(ac, ac->admin->head, base);
}

static void
admin_write_cb(struct bufferevent *bev, void *arg)
{
	struct admin_conn *ac = arg;

	if (ac->done && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		admin_conn_free(ac);
}

static void
admin_event_cb(struct bufferevent *bev, short what, void *arg)
{
	admin_conn_free(arg);
}

static void
admin_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct sl_admin *admin = arg;
	struct admin_conn *ac, *oldest;
	struct timeval tv = {ADMIN_IDLE_S, 0};

	if (admin->nconns >= ADMIN_MAX_CONNS) {
		oldest = TAILQ_FIRST(&admin->conns);
		admin->evicted++;
		sl_log_limited(&admin->evict_log, 0,
		    "admin: %d connections open; closing the oldest (open "
		    "for %lld s)",
		    ADMIN_MAX_CONNS,
		    (long long)((sl_ctl_mono_ms() - oldest->accepted_ms) /
		        1000));
		admin_conn_free(oldest);
	}
	ac = calloc(1, sizeof *ac);
	if (ac == NULL) {
		evutil_closesocket(fd);
		return;
	}
	ac->admin = admin;
	ac->accepted_ms = sl_ctl_mono_ms();
	ac->bev =
	    bufferevent_socket_new(admin->ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (ac->bev == NULL) {
		evutil_closesocket(fd);
		free(ac);
		return;
	}
	TAILQ_INSERT_TAIL(&admin->conns, ac, link);
	admin->nconns++;
	bufferevent_setcb(
	    ac->bev, admin_read_cb, admin_write_cb, admin_event_cb, ac);
	bufferevent_set_timeouts(ac->bev, &tv, &tv);
	bufferevent_enable(ac->bev, EV_READ);
}

void
sl_admin_counts(const struct sl_ctl *ctl, uint64_t *evicted, uint64_t *slow)
{
	*evicted = ctl->admin != NULL ? ctl->admin->evicted : 0;
	*slow = ctl->admin != NULL ? ctl->admin->too_slow : 0;
}

/* Listen on ADDR for admin requests. SO_REUSEPORT, like the listeners:
 * a sluice started with --takeover binds it beside the running one. */
int
sl_admin_start(
    struct sl_ctl *ctl, const struct sockaddr *addr, int addrlen, char **errp)
{
	struct sl_admin *admin = sl_xcalloc(1, sizeof *admin);

	admin->ctl = ctl;
	TAILQ_INIT(&admin->conns);
	admin->head = sl_http_head_new(64);
	sl_http_parser_init(&admin->parser, false);
	admin->listener =
	    evconnlistener_new_bind(ctl->base, admin_accept_cb, admin,
	        LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
	            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	        64, addr, addrlen);
	if (admin->listener == NULL ||
	    sl_accept_guard_init(
	        &admin->guard, ctl->base, admin->listener, "admin") != 0) {
		*errp = sl_xasprintf("cannot listen: %s", strerror(errno));
		if (admin->listener != NULL)
			evconnlistener_free(admin->listener);
		sl_http_head_free(admin->head);
		free(admin);
		return -1;
	}
	ctl->admin = admin;
	return 0;
}

void
sl_admin_close(struct sl_ctl *ctl)
{
	if (ctl->admin == NULL || ctl->admin->listener == NULL)
		return;
	sl_accept_guard_free(&ctl->admin->guard);
	evconnlistener_free(ctl->admin->listener);
	ctl->admin->listener = NULL;
}

void
sl_admin_stop(struct sl_ctl *ctl)
{
	if (ctl->admin == NULL)
		return;
	sl_admin_close(ctl);
	while (!TAILQ_EMPTY(&ctl->admin->conns))
		admin_conn_free(TAILQ_FIRST(&ctl->admin->conns));
	sl_http_head_free(ctl->admin->head);
	free(ctl->admin);
	ctl->admin = NULL;
}
