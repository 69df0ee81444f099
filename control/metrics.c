/*
 * metrics.c — the control thread's view of the numbers: summing the
 * workers' counters, harvesting them once a second into time windows, and
 * rendering them as /stats JSON and Prometheus text.
 *
 * Everything here is generated from the counter X-macros in
 * analysis/stats.h, so a new counter shows up in both outputs.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"
#include "proxy/route.h"

/* Bucket bounds of sluice_request_duration_seconds: fine enough around
 * typical service latencies to read p50/p90/p99 from. */
static const double prom_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01,
    0.0125, 0.015, 0.0175, 0.02, 0.0225, 0.025, 0.03, 0.035, 0.04, 0.05, 0.06,
    0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5,
    10, 30, 60};

#define NLE (sizeof prom_le / sizeof prom_le[0])

/* One (service, version) of the current table with what /metrics shows
 * of its totals (about 600 bytes: a scrape of 2,500 versions kept their
 * whole counters, 109 MB). */
struct vrow {
	const char *service;
	const char *version;
	uint32_t id;
	double weight_pct;
	bool stable;
	struct {
#define SL_X(f, fam, l, lv, h) uint64_t f;
		SL_VSTATS_COUNTERS(SL_X)
#undef SL_X
		uint64_t client_slowed;
		int64_t active;
	} total;
	uint64_t le[NLE]; /* the histogram's cumulative counts at prom_le */
	uint64_t count, sum, clamped;
};

/* Sum version ID over the workers. */
void
sl_ctl_version_total(
    const struct sl_ctl *ctl, uint32_t id, struct sl_vstats *out)
{
	unsigned i;

	memset(out, 0, sizeof *out);
	for (i = 0; i < ctl->nworkers; i++) {
		if (ctl->workers[i]->vstats[id] != NULL)
			sl_vstats_merge(out, ctl->workers[i]->vstats[id]);
	}
}

/* Sum the workers' connection counters. */
void
sl_ctl_worker_total(const struct sl_ctl *ctl, struct sl_wstats *out)
{
	unsigned i;

	memset(out, 0, sizeof *out);
	for (i = 0; i < ctl->nworkers; i++)
		sl_wstats_merge(out, &ctl->workers[i]->wstats);
}

/* Every version of the current table, with live totals (heap array). */
static struct vrow *
collect_rows(const struct sl_ctl *ctl, size_t *n)
{
	const struct sl_route_table *t = sl_route_current();
	static struct sl_vstats v; /* control thread only; 44 KiB */
	struct vrow *rows;
	size_t i, j, k = 0, total = 0;

	for (i = 0; i < t->nservices; i++)
		total += t->services[i].nversions;
	rows = sl_xcalloc(total ? total : 1, sizeof *rows);
	for (i = 0; i < t->nservices; i++) {
		const struct sl_route_service *s = &t->services[i];

		for (j = 0; j < s->nversions; j++, k++) {
			struct vrow *r = &rows[k];

			r->service = s->name;
			r->version = s->versions[j].name;
			r->id = s->versions[j].id;
			r->weight_pct = s->versions[j].weight / 100.0;
			r->stable = j == s->stable;
			sl_ctl_version_total(ctl, r->id, &v);
#define SL_X(f, fam, l, lv, h) r->total.f = v.f;
			SL_VSTATS_COUNTERS(SL_X)
#undef SL_X
			r->total.client_slowed = v.client_slowed;
			r->total.active = v.active;
			sl_hist_cumulative(&v.latency, prom_le, NLE, r->le);
			r->count = sl_hist_count(&v.latency);
			r->sum = sl_hist_sum(&v.latency);
			r->clamped = sl_hist_clamped(&v.latency);
		}
	}
	*n = total;
	return rows;
}

/*
 * Has anything of version ID moved since S's last harvest? A version at
 * rest then costs a harvest a few loads per worker, not the merge of its
 * histograms (helper-76: 19.5 us a version a second, 4.9% of a core for
 * 2500 versions and no traffic).
 */
static bool
version_moved(const struct sl_ctl *ctl, uint32_t id, const struct sl_series *s,
    uint64_t *sig)
{
	int64_t active = 0;
	unsigned i;

	*sig = 0;
	for (i = 0; i < ctl->nworkers; i++) {
		const struct sl_vstats *v = ctl->workers[i]->vstats[id];

		if (v != NULL) {
			*sig += sl_vstats_moved(v);
			active += SL_STAT_READ(v->active);
		}
	}
	return sl_series_moved(s, *sig, active);
}

/* Add one slot to every version's series. */
void
sl_ctl_harvest(struct sl_ctl *ctl)
{
	const struct sl_route_table *t = sl_route_current();
	static struct sl_vstats total; /* control thread only; 44 KiB */
	int64_t now = (int64_t)time(NULL);
	uint64_t sig;
	size_t i, j;

	for (i = 0; i < t->nservices; i++) {
		for (j = 0; j < t->services[i].nversions; j++) {
			uint32_t id = t->services[i].versions[j].id;

			if (ctl->series[id] == NULL)
				ctl->series[id] = sl_series_new();
			if (!version_moved(ctl, id, ctl->series[id], &sig)) {
				sl_series_harvest_still(ctl->series[id], now);
				continue;
			}
			sl_ctl_version_total(ctl, id, &total);
			sl_series_harvest(ctl->series[id], &total, sig, now);
		}
	}
	ctl->harvest_sec = now;
	ctl->harvest_ms = sl_ctl_mono_ms();
	sl_health_watch_ejections(ctl, t);
}

void
sl_ctl_reclaim_versions(struct sl_ctl *ctl)
{
	static uint8_t used[SL_MAX_VERSION_IDS]; /* control thread only */
	uint32_t n = sl_route_versions_in_use(used), id;
	size_t i;

	for (i = 0; i < ctl->nrt; i++) {
		if (ctl->rt[i]->run != NULL)
			sl_ctl_rollout_mark_ids(ctl->rt[i]->run, used);
		if (ctl->rt[i]->guard != NULL)
			sl_guard_mark_id(ctl->rt[i]->guard, used);
	}
	for (id = 0; id < n; id++) {
		if (used[id] || !sl_route_version_known(id))
			continue;
		/* No worker holds a table that routes to it: none touches
		 * its counters (a request holds its table to the end). */
		for (i = 0; i < ctl->nworkers; i++) {
			free(ctl->workers[i]->vstats[id]);
			ctl->workers[i]->vstats[id] = NULL;
		}
		sl_series_free(ctl->series[id]);
		ctl->series[id] = NULL;
		sl_route_forget_version(id);
	}
}

static void
harvest_cb(evutil_socket_t fd, short what, void *arg)
{
	sl_ctl_harvest(arg);
}

/* Start harvesting once a second. */
int
sl_ctl_metrics_start(struct sl_ctl *ctl)
{
	struct timeval one = {1, 0};

	sl_ctl_harvest(ctl);
	/* The first harvest starts every series: windows count from it. */
	ctl->started = ctl->harvest_sec;
	ctl->harvest_ev = event_new(ctl->base, -1, EV_PERSIST, harvest_cb, ctl);
	if (ctl->harvest_ev == NULL)
		return -1;
	return event_add(ctl->harvest_ev, &one);
}

void
sl_ctl_metrics_stop(struct sl_ctl *ctl)
{
	size_t i;

	if (ctl->harvest_ev != NULL)
		event_free(ctl->harvest_ev);
	ctl->harvest_ev = NULL;
	for (i = 0; i < SL_MAX_VERSION_IDS; i++) {
		sl_series_free(ctl->series[i]);
		ctl->series[i] = NULL;
	}
	free(ctl->eject_seen);
	free(ctl->eject_out);
	ctl->eject_seen = NULL;
	ctl->eject_out = NULL;
}

/* The /stats name of a counter family. */
static const char *
json_family(const char *family)
{
	if (strcmp(family, "routed_requests") == 0)
		return "requests";
	if (strcmp(family, "routed_requests_by_rule") == 0)
		return "requests_by_rule";
	if (strcmp(family, "requests") == 0)
		return "responses";
	return family;
}

/* Latency in milliseconds, rounded to the microsecond. */
static json_t *
ms(double usec)
{
	return json_real(round(usec) / 1000.0);
}

/* One version's numbers over SECONDS (for rps). */
json_t *
sl_ctl_version_json(
    const struct sl_vstats *v, double seconds, double weight_pct)
{
	json_t *o = json_object(), *lat = json_object();
	uint64_t responses = sl_vstats_responses(v);
	uint64_t errors = sl_vstats_errors(v);
	const struct sl_hist *h = &v->latency;

	json_object_set_new(o, "weight", json_real(weight_pct));
#define SL_X(f, fam, label, lv, help)                                          \
	if (label == NULL) {                                                   \
		json_object_set_new(                                           \
		    o, json_family(fam), json_integer((json_int_t)v->f));      \
	} else {                                                               \
		json_t *g = json_object_get(o, json_family(fam));              \
		if (g == NULL) {                                               \
			g = json_object();                                     \
			json_object_set_new(o, json_family(fam), g);           \
		}                                                              \
		json_object_set_new(g, lv, json_integer((json_int_t)v->f));    \
	}
	SL_VSTATS_COUNTERS(SL_X)
#undef SL_X
	json_object_set_new(o, "active", json_integer(v->active));
	json_object_set_new(o, "rps",
	    json_real(
	        seconds > 0 ? round(v->requests / seconds * 100) / 100 : 0));
	json_object_set_new(o, "errors", json_integer((json_int_t)errors));
	json_object_set_new(o, "error_rate",
	    json_real(responses ? (double)errors / (double)responses : 0));
	json_object_set_new(
	    lat, "count", json_integer((json_int_t)sl_hist_count(h)));
	json_object_set_new(lat, "mean", ms(sl_hist_mean(h)));
	json_object_set_new(lat, "p50", ms(sl_hist_quantile(h, 0.5)));
	json_object_set_new(lat, "p90", ms(sl_hist_quantile(h, 0.9)));
	json_object_set_new(lat, "p99", ms(sl_hist_quantile(h, 0.99)));
	json_object_set_new(lat, "p999", ms(sl_hist_quantile(h, 0.999)));
	json_object_set_new(lat, "max", ms((double)sl_hist_max(h)));
	json_object_set_new(
	    lat, "clamped", json_integer((json_int_t)sl_hist_clamped(h)));
	json_object_set_new(
	    lat, "client_slowed", json_integer((json_int_t)v->client_slowed));
	json_object_set_new(o, "latency_ms", lat);
	return o;
}

/*
 * One version's window of SECONDS into V: the last SECONDS one-second
 * slots and what came since the last harvest (the workers' counters read
 * now, as the harvest reads them), so that a burst shows at once.
 * Returns the seconds covered: fewer slots while the series is younger,
 * plus PARTIAL, the seconds since the last harvest.
 */
static double
version_window(struct sl_ctl *ctl, uint32_t id, uint32_t seconds,
    double partial, struct sl_vstats *v)
{
	static struct sl_vstats live; /* control thread only */
	double span;

	if (ctl->series[id] == NULL) { /* not harvested yet */
		memset(v, 0, sizeof *v);
		return 0;
	}
	sl_ctl_version_total(ctl, id, &live);
	span =
	    sl_series_window_live(ctl->series[id], seconds, &live, v) + partial;
	/* The window's max is known only to its bucket: report it as a
	 * quantile is, never above the exact max since start. */
	v->latency.max =
	    sl_hist_window_max(&v->latency, sl_hist_max(&live.latency));
	return span;
}

/* The /stats document. */
json_t *
sl_ctl_stats_json(
    struct sl_ctl *ctl, const char *service, uint32_t seconds, char **errp)
{
	const struct sl_route_table *t = sl_route_current();
	static struct sl_vstats v; /* control thread only */
	json_t *doc, *services;
	int64_t now = (int64_t)time(NULL), slots;
	double span, partial;
	size_t i, j;
	bool found = false;

	if (seconds > SL_WINDOW_SLOTS) {
		*errp = sl_xasprintf("seconds must be 1..%d", SL_WINDOW_SLOTS);
		return NULL;
	}
	/* A window is SECONDS one-second slots and the part of the current
	 * second since the last harvest: what it covers, not what was
	 * asked (less while sluice is younger than SECONDS). */
	partial = (double)(sl_ctl_mono_ms() - ctl->harvest_ms) / 1000;
	slots = ctl->harvest_sec - ctl->started;
	if (slots > (int64_t)seconds)
		slots = seconds;
	if (slots < 0)
		slots = 0;
	doc = json_object();
	services = json_object();
	json_object_set_new(
	    doc, "uptime_seconds", json_integer(now - ctl->started));
	json_object_set_new(doc, "window_seconds",
	    seconds ? json_real(round(((double)slots + partial) * 1000) / 1000)
	            : json_null());
	for (i = 0; i < t->nservices; i++) {
		const struct sl_route_service *s = &t->services[i];
		json_t *so, *vo;

		if (service != NULL && strcmp(service, s->name) != 0)
			continue;
		found = true;
		so = json_object();
		vo = json_object();
		json_object_set_new(
		    so, "stable", json_string(s->versions[s->stable].name));
		for (j = 0; j < s->nversions; j++) {
			const struct sl_route_version *rv = &s->versions[j];

			if (seconds == 0) {
				sl_ctl_version_total(ctl, rv->id, &v);
				span = (double)(now - ctl->started);
				if (span < 1)
					span = 1;
			} else
				span = version_window(
				    ctl, rv->id, seconds, partial, &v);
			json_object_set_new(vo, rv->name,
			    sl_ctl_version_json(&v, span, rv->weight / 100.0));
		}
		json_object_set_new(so, "versions", vo);
		/* Each server's state (ready/drain/maint, health, ejection),
		 * as in "show service". */
		{
			json_t *detail = sl_ctl_service_json(ctl, s, true);
			json_t *dv = json_object_get(detail, "versions");
			size_t k;
			json_t *ent;

			json_array_foreach(dv, k, ent)
			{
				json_t *target = json_object_get(vo,
				    json_string_value(
				        json_object_get(ent, "name")));

				if (target != NULL)
					json_object_set(target, "servers",
					    json_object_get(ent, "servers"));
			}
			json_decref(detail);
		}
		json_object_set_new(services, s->name, so);
	}
	json_object_set_new(doc, "services", services);
	if (service != NULL && !found) {
		json_decref(doc);
		*errp = sl_xasprintf("unknown service '%s'", service);
		return NULL;
	}
	return doc;
}

/* Prometheus label set for a row. */
static void
labels(struct evbuffer *out, const struct vrow *r)
{
	evbuffer_add_printf(
	    out, "service=\"%s\",version=\"%s\"", r->service, r->version);
}

/*
 * Each server of the current table: whether it takes new requests (per
 * service and version that lists it), and its passive ejections (once per
 * server: a server is one server, whichever versions list it).
 */
static void
server_metrics(struct sl_ctl *ctl, struct evbuffer *out)
{
	const struct sl_route_table *t = sl_route_current();
	struct evbuffer *ejections = evbuffer_new();
	uint8_t seen[SL_MAX_SERVER_IDS / 8] = {0};
	uint64_t now = sl_ctl_mono_ms(), until, total;
	uint8_t reason;
	size_t i, j, k;

	if (ejections == NULL)
		return;
	evbuffer_add_printf(out,
	    "# HELP sluice_server_available 1 when the server takes new "
	    "requests: ready (not drain or maint), not down by health "
	    "checks, not ejected.\n"
	    "# TYPE sluice_server_available gauge\n");
	evbuffer_add_printf(ejections,
	    "# HELP sluice_server_ejections_total Passive outlier ejections "
	    "of the server, over all workers.\n"
	    "# TYPE sluice_server_ejections_total counter\n");
	for (i = 0; i < t->nservices; i++) {
		const struct sl_route_service *svc = &t->services[i];

		for (j = 0; j < svc->nversions; j++) {
			const struct sl_route_version *v = &svc->versions[j];

			for (k = 0; k < v->nservers; k++) {
				const struct sl_route_server *s =
				    &v->servers[k];

				sl_ctl_server_ejection(
				    ctl, s->id, &until, &reason, &total);
				evbuffer_add_printf(out,
				    "sluice_server_available{service=\"%s\","
				    "version=\"%s\",server=\"%s\"} %d\n",
				    svc->name, v->name, s->addr.text,
				    s->state == SL_SERVER_READY && s->healthy &&
				        until <= now);
				if (seen[s->id / 8] & (1u << s->id % 8))
					continue;
				seen[s->id / 8] |= 1u << s->id % 8;
				evbuffer_add_printf(ejections,
				    "sluice_server_ejections_total{server="
				    "\"%s\"} %llu\n",
				    s->addr.text, (unsigned long long)total);
			}
		}
	}
	evbuffer_add_buffer(out, ejections);
	evbuffer_free(ejections);
}

static uint64_t
clamped_of(const struct vrow *r)
{
	return r->clamped;
}

static uint64_t
client_slowed_of(const struct vrow *r)
{
	return r->total.client_slowed;
}

/* A counter family with a value per version row, VALUE's. */
static void
per_version(struct evbuffer *out, const struct vrow *rows, size_t n,
    const char *name, const char *help, uint64_t (*value)(const struct vrow *))
{
	size_t i;

	evbuffer_add_printf(
	    out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (i = 0; i < n; i++) {
		evbuffer_add_printf(out, "%s{", name);
		labels(out, &rows[i]);
		evbuffer_add_printf(
		    out, "} %llu\n", (unsigned long long)value(&rows[i]));
	}
}

/* Append the Prometheus text exposition (format 0.0.4). */
void
sl_ctl_metrics_text(struct sl_ctl *ctl, struct evbuffer *out)
{
	struct sl_wstats ws;
	struct vrow *rows;
	size_t n, i, b;
	uint64_t admin_evicted, admin_slow;

	rows = collect_rows(ctl, &n);
	evbuffer_add_printf(out,
	    "# HELP sluice_build_info sluice build information.\n"
	    "# TYPE sluice_build_info gauge\n"
	    "sluice_build_info{version=\"%s\"} 1\n"
	    "# HELP sluice_uptime_seconds Seconds since sluice started.\n"
	    "# TYPE sluice_uptime_seconds gauge\n"
	    "sluice_uptime_seconds %lld\n"
	    "# HELP sluice_workers Worker threads.\n"
	    "# TYPE sluice_workers gauge\n"
	    "sluice_workers %u\n"
	    "# HELP sluice_routing_tables_retired Routing tables replaced (by "
	    "a reload or a runtime change) and not freed yet: a request in "
	    "flight, or a worker that has not looked in the last second, "
	    "still has them.\n"
	    "# TYPE sluice_routing_tables_retired gauge\n"
	    "sluice_routing_tables_retired %zu\n",
	    PACKAGE_VERSION, (long long)((int64_t)time(NULL) - ctl->started),
	    ctl->nworkers, sl_route_retired_count());

#define SL_X(f, fam, label, lv, help)                                          \
	if (help != NULL)                                                      \
		evbuffer_add_printf(out,                                       \
		    "# HELP sluice_%s_total %s\n# TYPE sluice_%s_total "       \
		    "counter\n",                                               \
		    fam, (const char *)help, fam);                             \
	for (i = 0; i < n; i++) {                                              \
		evbuffer_add_printf(out, "sluice_%s_total{", fam);             \
		labels(out, &rows[i]);                                         \
		if (label != NULL)                                             \
			evbuffer_add_printf(out, ",%s=\"%s\"",                 \
			    (const char *)label, (const char *)lv);            \
		evbuffer_add_printf(                                           \
		    out, "} %llu\n", (unsigned long long)rows[i].total.f);     \
	}
	SL_VSTATS_COUNTERS(SL_X)
#undef SL_X

	evbuffer_add_printf(out,
	    "# HELP sluice_request_duration_seconds Full request time as the "
	    "proxy saw it, first request byte to last response byte.\n"
	    "# TYPE sluice_request_duration_seconds histogram\n");
	for (i = 0; i < n; i++) {
		for (b = 0; b < NLE; b++) {
			evbuffer_add_printf(
			    out, "sluice_request_duration_seconds_bucket{");
			labels(out, &rows[i]);
			evbuffer_add_printf(out, ",le=\"%g\"} %llu\n",
			    prom_le[b], (unsigned long long)rows[i].le[b]);
		}
		evbuffer_add_printf(
		    out, "sluice_request_duration_seconds_bucket{");
		labels(out, &rows[i]);
		evbuffer_add_printf(out, ",le=\"+Inf\"} %llu\n",
		    (unsigned long long)rows[i].count);
		evbuffer_add_printf(
		    out, "sluice_request_duration_seconds_sum{");
		labels(out, &rows[i]);
		evbuffer_add_printf(out, "} %.6f\n", rows[i].sum / 1e6);
		evbuffer_add_printf(
		    out, "sluice_request_duration_seconds_count{");
		labels(out, &rows[i]);
		evbuffer_add_printf(
		    out, "} %llu\n", (unsigned long long)rows[i].count);
	}

	per_version(out, rows, n, "sluice_request_duration_clamped_total",
	    "Requests longer than the latency histogram's range (67.108863 "
	    "s): counted in its top bucket, with their true time in _sum.",
	    clamped_of);
	per_version(out, rows, n, "sluice_request_duration_client_slowed_total",
	    "Requests whose own client took most of their time (a head or "
	    "body trickled in, a response read slowly): in the histogram, "
	    "left out of the analyzer's latency checks.",
	    client_slowed_of);

	evbuffer_add_printf(out,
	    "# HELP sluice_version_weight Share of the service's users, "
	    "percent.\n# TYPE sluice_version_weight gauge\n");
	for (i = 0; i < n; i++) {
		evbuffer_add_printf(out, "sluice_version_weight{");
		labels(out, &rows[i]);
		evbuffer_add_printf(out, "} %.2f\n", rows[i].weight_pct);
	}
	evbuffer_add_printf(out,
	    "# HELP sluice_version_stable 1 for the stable version of a "
	    "service.\n# TYPE sluice_version_stable gauge\n");
	for (i = 0; i < n; i++) {
		evbuffer_add_printf(out, "sluice_version_stable{");
		labels(out, &rows[i]);
		evbuffer_add_printf(out, "} %d\n", rows[i].stable);
	}
	evbuffer_add_printf(out,
	    "# HELP sluice_active_requests Requests in flight.\n"
	    "# TYPE sluice_active_requests gauge\n");
	for (i = 0; i < n; i++) {
		evbuffer_add_printf(out, "sluice_active_requests{");
		labels(out, &rows[i]);
		evbuffer_add_printf(
		    out, "} %lld\n", (long long)rows[i].total.active);
	}

	server_metrics(ctl, out);
	sl_ctl_rollout_metrics(ctl, out);
	sl_ctl_guard_metrics(ctl, out);
	sl_ctl_worker_total(ctl, &ws);
#define SL_X(f, name, help)                                                    \
	evbuffer_add_printf(out,                                               \
	    "# HELP sluice_%s_total %s.\n# TYPE sluice_%s_total counter\n"     \
	    "sluice_%s_total %llu\n",                                          \
	    name, help, name, name, (unsigned long long)ws.f);
	SL_WSTATS_COUNTERS(SL_X)
#undef SL_X
	sl_admin_counts(ctl, &admin_evicted, &admin_slow);
	evbuffer_add_printf(out,
	    "# HELP sluice_control_timeouts_total Control socket clients "
	    "closed for sending no whole command within control_line_timeout "
	    "or nothing within control_idle_timeout.\n"
	    "# TYPE sluice_control_timeouts_total counter\n"
	    "sluice_control_timeouts_total %llu\n"
	    "# HELP sluice_control_refused_total Control socket clients "
	    "refused: every client slot taken, or the user's share.\n"
	    "# TYPE sluice_control_refused_total counter\n"
	    "sluice_control_refused_total %llu\n"
	    "# HELP sluice_admin_connections_closed_total Admin endpoint "
	    "connections closed unanswered: evicted (the oldest, when 128 "
	    "were open) or too_slow (no whole head within 10 s).\n"
	    "# TYPE sluice_admin_connections_closed_total counter\n"
	    "sluice_admin_connections_closed_total{reason=\"evicted\"} %llu\n"
	    "sluice_admin_connections_closed_total{reason=\"too_slow\"} "
	    "%llu\n"
	    "# HELP sluice_log_lines_dropped_total Log lines lost because "
	    "stderr, a pipe, was full (its reader stalled).\n"
	    "# TYPE sluice_log_lines_dropped_total counter\n"
	    "sluice_log_lines_dropped_total %llu\n",
	    (unsigned long long)ctl->ctl_timeouts,
	    (unsigned long long)ctl->ctl_refused,
	    (unsigned long long)admin_evicted, (unsigned long long)admin_slow,
	    sl_log_dropped());
	evbuffer_add_printf(out,
	    "# HELP sluice_connections_active Client connections open.\n"
	    "# TYPE sluice_connections_active gauge\n"
	    "sluice_connections_active %lld\n",
	    (long long)ws.conns_active);
	free(rows);
}
