/*
 * health.c — servers' health as the control thread sees it: active HTTP
 * health checks, and the record of the workers' passive ejections.
 *
 * Each server of a service with health_path gets a checker: every
 * health_interval it sends "GET health_path" on a new connection and
 * reads the status line. health_fall failures in a row take the server
 * down, health_rise successes bring it back; each change publishes a new
 * routing table (the server's `healthy` flag), so workers see it at their
 * next request, and is recorded as an event.
 *
 * A server nothing is known of yet is routed to, and checked at once:
 * its first check alone decides (a failure takes it down, with no
 * health_fall to wait for), as there is no history to smooth. A sluice
 * that takes over from another (--takeover) starts from what the other
 * one knew instead (ctl->health_seed).
 *
 * Checkers are keyed by service and server id (stable across reloads), so
 * a reload keeps what is known about each server; a server two services
 * list is checked by each with its own health_path and settings, and is
 * down for the one whose checks fail (as in HAProxy's backends and Envoy's
 * clusters), while passive ejection is per server.
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"
#include "proxy/route.h"
#include "proxy/tls.h"
#include "proxy/upstream.h"

struct sl_health {
	struct sl_ctl *ctl;
	uint32_t server_id;
	char addr_text[128];
	char service[64];
	char version[64];
	struct sockaddr_storage ss;
	socklen_t sslen;
	/* TLS to the origin (the version's settings), or NULL; points into
	 * the config of the table of the last sync, which outlives it. */
	const struct sl_origin_tls_conf *tls;
	struct sl_route_server srv; /* for SNI and verification */
	char *request;              /* the check's request bytes */
	uint32_t interval_ms, timeout_ms, rise, fall;
	uint16_t status_min, status_max;
	struct event *timer;
	struct event *first;     /* the check at once of a server new to us */
	struct bufferevent *bev; /* the check in flight */
	uint64_t deadline_ms;    /* its end: timeout_ms in total, however
	                            slowly its status line trickles in */
	uint32_t ok_in_row, fail_in_row;
	bool known; /* a check has ended (or the old sluice told) */
	bool down;
	char why[128]; /* last failure */
	bool seen;     /* still configured after the last sync */
};

static void health_check_start(struct sl_health *h);

/* The checker of server ID for service SERVICE, or NULL. */
static struct sl_health *
find(struct sl_ctl *ctl, const char *service, uint32_t id)
{
	size_t i;

	for (i = 0; i < ctl->nhealth; i++) {
		if (ctl->health[i]->server_id == id &&
		    strcmp(ctl->health[i]->service, service) == 0)
			return ctl->health[i];
	}
	return NULL;
}

/* Copy the healthy flags of every checker into table T (unpublished). */
void
sl_health_apply(struct sl_ctl *ctl, struct sl_route_table *t)
{
	size_t i, j, k;

	for (i = 0; i < t->nservices; i++) {
		for (j = 0; j < t->services[i].nversions; j++) {
			struct sl_route_version *v =
			    &t->services[i].versions[j];

			for (k = 0; k < v->nservers; k++) {
				struct sl_health *h = find(
				    ctl, t->services[i].name, v->servers[k].id);

				v->servers[k].healthy = h == NULL || !h->down;
			}
		}
	}
}

/* A check ended: count it, and publish a change of state. */
static void
check_done(struct sl_health *h, bool ok, const char *why)
{
	struct sl_ctl *ctl = h->ctl;
	struct sl_route_table *t;
	char msg[512];
	bool was_down = h->down;

	if (h->bev != NULL) {
		bufferevent_free(h->bev);
		h->bev = NULL;
	}
	if (ok) {
		h->fail_in_row = 0;
		h->ok_in_row++;
		if (h->down && h->ok_in_row >= h->rise)
			h->down = false;
	} else {
		snprintf(h->why, sizeof h->why, "%s", why);
		h->ok_in_row = 0;
		h->fail_in_row++;
		if (!h->down && (h->fail_in_row >= h->fall || !h->known))
			h->down = true;
	}
	h->known = true;
	if (h->down == was_down)
		return;
	t = sl_route_clone(sl_route_current());
	sl_health_apply(ctl, t);
	sl_ctl_publish(ctl, t);
	if (h->down && h->fail_in_row < h->fall)
		snprintf(msg, sizeof msg,
		    "health: %s/%s %s down at its first check: %s", h->service,
		    h->version, h->addr_text, h->why);
	else if (h->down)
		snprintf(msg, sizeof msg,
		    "health: %s/%s %s down after %u failed check%s: %s",
		    h->service, h->version, h->addr_text, h->fail_in_row,
		    h->fail_in_row == 1 ? "" : "s", h->why);
	else
		snprintf(msg, sizeof msg,
		    "health: %s/%s %s up after %u good check%s", h->service,
		    h->version, h->addr_text, h->ok_in_row,
		    h->ok_in_row == 1 ? "" : "s");
	sl_event(ctl, NULL, msg, NULL, NULL);
}

static void
check_read_cb(struct bufferevent *bev, void *arg)
{
	struct sl_health *h = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	unsigned status;
	char why[64];
	uint64_t now;

	line = evbuffer_readln(in, NULL, EVBUFFER_EOL_CRLF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > 4096)
			check_done(h, false, "status line too long");
		else if ((now = sl_ctl_mono_ms()) >= h->deadline_ms)
			check_done(h, false, "timeout");
		else {
			/* The rest has what is left of the timeout. */
			uint64_t left = h->deadline_ms - now;
			struct timeval tv = {(time_t)(left / 1000),
			    (suseconds_t)(left % 1000) * 1000};

			bufferevent_set_timeouts(bev, &tv, &tv);
		}
		return;
	}
	/* "HTTP/1.x NNN" and a space or the end (RFC 9112 4): exactly
	 * three digits, as the proxy reads them, or "2000" would pass. */
	if (strncmp(line, "HTTP/1.", 7) != 0 ||
	    !isdigit((unsigned char)line[7]) || line[8] != ' ' ||
	    !isdigit((unsigned char)line[9]) ||
	    !isdigit((unsigned char)line[10]) ||
	    !isdigit((unsigned char)line[11]) ||
	    (line[12] != ' ' && line[12] != '\0')) {
		free(line);
		check_done(h, false, "not an HTTP response");
		return;
	}
	status = (unsigned)(line[9] - '0') * 100 +
	    (unsigned)(line[10] - '0') * 10 + (unsigned)(line[11] - '0');
	free(line);
	if (status >= h->status_min && status <= h->status_max) {
		check_done(h, true, NULL);
		return;
	}
	snprintf(why, sizeof why, "status %u", status);
	check_done(h, false, why);
}

static void
check_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct sl_health *h = arg;
	char why[160];

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_TIMEOUT)
		check_done(h, false, "timeout");
	else if (h->tls != NULL &&
	    sl_tls_describe(bufferevent_openssl_get_ssl(bev),
	        bufferevent_get_openssl_error(bev), why, sizeof why) == 1)
		check_done(h, false, why);
	else if (what & BEV_EVENT_EOF)
		check_done(h, false, "closed before a status line");
	else
		check_done(h, false,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* A connecting TLS bufferevent for a check (checks are few, so libevent's
 * bufferevent_openssl does; the request path has io.c's TLS mode). */
static struct bufferevent *
tls_bev(struct sl_health *h)
{
	SSL *ssl = sl_tls_origin_ssl(h->tls, &h->srv, NULL);
	struct bufferevent *bev;

	if (ssl == NULL)
		return NULL;
	/* A check reads a status line only: how the stream ends is moot. */
	SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	bev = bufferevent_openssl_socket_new(h->ctl->base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* Send one check. */
static void
health_check_start(struct sl_health *h)
{
	struct timeval tv;

	if (h->bev != NULL)
		return; /* the previous check is still running */
	if (h->tls != NULL)
		h->bev = tls_bev(h);
	else
		h->bev = bufferevent_socket_new(
		    h->ctl->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (h->bev == NULL)
		return;
	tv.tv_sec = h->timeout_ms / 1000;
	tv.tv_usec = (h->timeout_ms % 1000) * 1000;
	bufferevent_set_timeouts(h->bev, &tv, &tv);
	h->deadline_ms = sl_ctl_mono_ms() + h->timeout_ms;
	bufferevent_setcb(h->bev, check_read_cb, NULL, check_event_cb, h);
	bufferevent_enable(h->bev, EV_READ | EV_WRITE);
	evbuffer_add(
	    bufferevent_get_output(h->bev), h->request, strlen(h->request));
	if (bufferevent_socket_connect(
	        h->bev, (struct sockaddr *)&h->ss, (int)h->sslen) != 0)
		check_done(h, false, "cannot connect");
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	health_check_start(arg);
}

static void
health_free(struct sl_health *h)
{
	if (h->bev != NULL)
		bufferevent_free(h->bev);
	if (h->timer != NULL)
		event_free(h->timer);
	if (h->first != NULL)
		event_free(h->first);
	free(h->request);
	free(h);
}

/* Whether O's member KEY is the string WANT. */
static bool
member_is(const json_t *o, const char *key, const char *want)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v != NULL && strcmp(v, want) == 0;
}

/* Start new checker H from what the sluice taken over from knew of its
 * server (ctl->health_seed), if it knew something. */
static bool
seed(struct sl_ctl *ctl, struct sl_health *h)
{
	size_t i;
	json_t *o;

	json_array_foreach(ctl->health_seed, i, o)
	{
		const char *why;

		if (!member_is(o, "service", h->service) ||
		    !member_is(o, "version", h->version) ||
		    !member_is(o, "server", h->addr_text))
			continue;
		h->known = true;
		h->down = member_is(o, "health", "down");
		/* As if it had just come up, or gone down. */
		h->ok_in_row = h->down ? 0 : h->rise;
		h->fail_in_row = h->down ? h->fall : 0;
		why = json_string_value(json_object_get(o, "why"));
		if (why != NULL)
			snprintf(h->why, sizeof h->why, "%s", why);
		return true;
	}
	return false;
}

json_t *
sl_health_export(struct sl_ctl *ctl)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < ctl->nhealth; i++) {
		const struct sl_health *h = ctl->health[i];

		if (!h->known)
			continue;
		json_array_append_new(a,
		    json_pack("{s:s,s:s,s:s,s:s,s:s}", "service", h->service,
		        "version", h->version, "server", h->addr_text, "health",
		        h->down ? "down" : "up", "why", h->why));
	}
	return a;
}

/*
 * Make the checkers match table T: one per server of every service with a
 * health_path; keep the state of servers already checked, drop the rest.
 */
void
sl_health_sync(struct sl_ctl *ctl, const struct sl_route_table *t)
{
	static const struct timeval at_once = {0, 0};
	size_t i, j, k, n;

	for (i = 0; i < ctl->nhealth; i++)
		ctl->health[i]->seen = false;
	for (i = 0; i < t->nservices; i++) {
		const struct sl_route_service *svc = &t->services[i];
		const struct sl_service_conf *sc = svc->conf;

		if (sc->health_path == NULL)
			continue;
		for (j = 0; j < svc->nversions; j++) {
			const struct sl_route_version *v = &svc->versions[j];
			const struct sl_version_conf *vc;

			for (k = 0; k < v->nservers; k++) {
				const struct sl_route_server *s =
				    &v->servers[k];
				struct sl_health *h =
				    find(ctl, svc->name, s->id);
				struct timeval tv;
				bool fresh = h == NULL;

				/* Listed by another version of the service:
				 * set up already in this sync. */
				if (h != NULL && h->seen)
					continue;
				if (fresh) {
					h = sl_xcalloc(1, sizeof *h);
					h->ctl = ctl;
					h->server_id = s->id;
					ctl->health = sl_xreallocarray(
					    ctl->health, ctl->nhealth + 1,
					    sizeof *ctl->health);
					ctl->health[ctl->nhealth++] = h;
				} else if (h->timer != NULL) {
					event_free(h->timer);
					free(h->request);
				}
				h->seen = true;
				snprintf(h->addr_text, sizeof h->addr_text,
				    "%s", s->addr.text);
				snprintf(h->service, sizeof h->service, "%s",
				    svc->name);
				snprintf(h->version, sizeof h->version, "%s",
				    v->name);
				memcpy(&h->ss, &s->addr.ss, sizeof h->ss);
				h->sslen = s->addr.len;
				h->srv = *s;
				vc = sl_conf_version(sc, v->name);
				h->tls = vc != NULL && vc->tls.enabled
				    ? &vc->tls
				    : NULL;
				h->interval_ms = sc->health_interval_ms;
				h->timeout_ms = sc->health_timeout_ms;
				h->rise = sc->health_rise;
				h->fall = sc->health_fall;
				h->status_min = sc->health_status_min;
				h->status_max = sc->health_status_max;
				h->request = sl_xasprintf(
				    "GET %s HTTP/1.1\r\nHost: %s\r\n"
				    "User-Agent: sluice-health-check\r\n"
				    "Connection: close\r\n\r\n",
				    sc->health_path,
				    sc->nhosts ? sc->hosts[0] : s->addr.text);
				h->timer = event_new(
				    ctl->base, -1, EV_PERSIST, timer_cb, h);
				tv.tv_sec = h->interval_ms / 1000;
				tv.tv_usec = (h->interval_ms % 1000) * 1000;
				event_add(h->timer, &tv);
				/* Checked at once, by a one-shot event:
				 * activating the persistent timer would put
				 * its next run two intervals away. */
				if (fresh && !seed(ctl, h)) {
					h->first =
					    evtimer_new(ctl->base, timer_cb, h);
					if (h->first != NULL)
						event_add(h->first, &at_once);
				}
			}
		}
	}
	for (i = 0, n = 0; i < ctl->nhealth; i++) {
		if (ctl->health[i]->seen)
			ctl->health[n++] = ctl->health[i];
		else
			health_free(ctl->health[i]);
	}
	ctl->nhealth = n;
}

/* Stop and free every checker. */
void
sl_health_stop(struct sl_ctl *ctl)
{
	size_t i;

	for (i = 0; i < ctl->nhealth; i++)
		health_free(ctl->health[i]);
	free(ctl->health);
	ctl->health = NULL;
	ctl->nhealth = 0;
}

/*
 * Record each passive ejection the workers made since the last look, and
 * each ejection's end, as events (once a second, from the harvest): the
 * workers eject on their own, in the request path, and only log it.
 */
void
sl_health_watch_ejections(struct sl_ctl *ctl, const struct sl_route_table *t)
{
	uint64_t now = sl_ctl_mono_ms();
	size_t i, j, k;
	char msg[512];

	if (ctl->eject_seen == NULL) {
		ctl->eject_seen =
		    sl_xcalloc(SL_MAX_SERVER_IDS, sizeof *ctl->eject_seen);
		ctl->eject_out =
		    sl_xcalloc(SL_MAX_SERVER_IDS, sizeof *ctl->eject_out);
	}
	for (i = 0; i < t->nservices; i++) {
		const struct sl_route_service *svc = &t->services[i];

		for (j = 0; j < svc->nversions; j++) {
			const struct sl_route_version *v = &svc->versions[j];

			for (k = 0; k < v->nservers; k++) {
				const struct sl_route_server *s =
				    &v->servers[k];
				uint64_t until, total;
				uint8_t reason;
				bool out;

				/* A server in several versions: the first
				 * look records it, the next ones see no
				 * change. */
				sl_ctl_server_ejection(
				    ctl, s->id, &until, &reason, &total);
				out = until > now;
				if (total > ctl->eject_seen[s->id])
					snprintf(msg, sizeof msg,
					    "outlier: %s/%s %s ejected for "
					    "%.1f s: %s (ejections by all "
					    "workers since start: %llu)",
					    svc->name, v->name, s->addr.text,
					    out ? (double)(until - now) / 1000
					        : 0.0,
					    sl_eject_reason_names[reason],
					    (unsigned long long)total);
				else if (ctl->eject_out[s->id] && !out)
					snprintf(msg, sizeof msg,
					    "outlier: %s/%s %s is back in "
					    "rotation: its ejection is over",
					    svc->name, v->name, s->addr.text);
				else
					continue;
				ctl->eject_seen[s->id] = total;
				ctl->eject_out[s->id] = out;
				sl_event(ctl, NULL, msg, NULL, NULL);
			}
		}
	}
}

/* Health of server ID as JSON fields (into O). */
void
sl_health_json(struct sl_ctl *ctl, const char *service, uint32_t id, json_t *o)
{
	struct sl_health *h = find(ctl, service, id);

	if (h == NULL) {
		json_object_set_new(o, "health", json_string("unchecked"));
		return;
	}
	json_object_set_new(o, "health", json_string(h->down ? "down" : "up"));
	if (h->why[0] != '\0')
		json_object_set_new(
		    o, "health_last_failure", json_string(h->why));
}
