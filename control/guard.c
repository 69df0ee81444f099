/*
 * guard.c — the blue/green guard: after `switch SVC VERSION`, for `guard`
 * seconds (a [rollout:SVC] key), the analyzer compares the new stable
 * version with how the previous one behaved just before the switch, and
 * switches back on its own if the new one is worse.
 *
 * The baseline is the previous stable's numbers over the last `guard`
 * seconds before the switch (at most the 600 s the time windows keep);
 * the new version is judged on everything it served since the switch, every
 * `interval`, with the same sequential tests as a rollout (so looking often
 * does not inflate false alarms). With `warmup`, what the new version does
 * in its first `warmup` (up to the next look) is left out, as in a
 * rollout's step, and the guard lasts `guard` after that. A FAIL switches back
 * at once; a guard that ends without one is recorded as passed if its last
 * verdict passed, else as inconclusive (too little traffic, or a worse
 * look not proven): the switch stays either way. A watching
 * guard is kept in the state file (its times and the baseline's counts and
 * latencies), so a restart resumes it until the same end, with a fresh
 * window for the new version (and its warm-up again), as a rollout resumes.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "analysis/rollout.h"
#include "analysis/verdict.h"
#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"
#include "proxy/route.h"

enum guard_state { WATCHING, PASSED, SWITCHED_BACK, ENDED, INCONCLUSIVE };

/* Their names (JSON) and, 1-based, sluice_guard_state's values. */
static const char *const guard_states[] = {
    "watching", "passed", "switched_back", "ended", "inconclusive"};

struct sl_guard {
	struct sl_ctl *ctl;
	char service[64];
	char version[64];  /* the new stable */
	char previous[64]; /* the one switched away from */
	uint32_t version_id;
	int64_t started, until;
	uint64_t warm_until_ms; /* monotonic; 0: no warm-up, or it is over */
	uint32_t interval_ms;   /* between looks */
	enum guard_state state;
	struct sl_verdict_params params;
	struct sl_verdict_seq *seq;
	/* The previous stable before the switch: answered requests, errors
	 * and latencies. */
	uint64_t base_requests, base_errors, base_unanswered;
	struct sl_hist base_latency;
	/* The new version's totals where its window begins (the switch, the
	 * end of its warm-up, a restart). */
	struct sl_vstats at_switch;
	struct sl_judgement last;
	bool have_last;
	struct event *tick;
};

void
sl_guard_mark_id(const struct sl_guard *g, uint8_t *used)
{
	used[g->version_id] = 1;
}

static void
guard_stop(struct sl_guard *g)
{
	if (g->tick != NULL)
		event_free(g->tick);
	g->tick = NULL;
	sl_verdict_seq_free(g->seq);
	g->seq = NULL;
}

/* Switch the service back to the previous stable version. */
static void
switch_back(struct sl_guard *g)
{
	struct sl_route_table *cur = sl_route_current(), *t;
	struct sl_route_service *svc =
	    sl_route_service_by_name(cur, g->service);
	struct sl_svc_rt *rt = sl_ctl_rt(g->ctl, g->service);
	uint32_t weights[256];
	char *err = NULL, *m;
	int idx;

	if (svc == NULL || svc->nversions > 256 ||
	    (idx = sl_route_version_index(svc, g->previous)) < 0)
		return;
	memset(weights, 0, sizeof weights);
	weights[idx] = SL_WEIGHT_TOTAL;
	t = sl_route_with_weights(
	    cur, (size_t)(svc - cur->services), weights, (size_t)idx, &err);
	if (t == NULL) {
		sl_log_error("guard %s: %s", g->service, err);
		free(err);
		return;
	}
	snprintf(
	    rt->previous_stable, sizeof rt->previous_stable, "%s", g->version);
	rt->touched = true;
	rt->guard_switch_backs++;
	/* A failing version leaves at once, even if the state file cannot
	 * be written (like a rollout's revert): the event says so. */
	if (sl_state_save(g->ctl, t, &err) != 0) {
		sl_log_error("guard %s: %s", g->service, err);
		g->ctl->state_unsaved = true;
	}
	sl_ctl_publish(g->ctl, t);
	m = sl_xasprintf("guard %s: switched back from %s to %s: %.200s%s%s%s",
	    g->service, g->version, g->previous, g->last.summary,
	    err != NULL ? " (state file not written: " : "",
	    err != NULL ? err : "", err != NULL ? ")" : "");
	free(err);
	sl_event(g->ctl, NULL, m, NULL, sl_ctl_guard_json(g->ctl, g->service));
	free(m);
}

/* G ends without a verdict (MSG says why): recorded as an event. */
static void
end_unjudged(struct sl_guard *g, const char *msg)
{
	g->state = ENDED;
	guard_stop(g);
	sl_event(
	    g->ctl, NULL, msg, NULL, sl_ctl_guard_json(g->ctl, g->service));
}

/* Write the state file, which keeps a watching guard; failures are
 * logged (the guard itself goes on). */
static void
save_state(struct sl_ctl *ctl, const char *svc)
{
	char *err = NULL;

	if (sl_state_save(ctl, sl_route_current(), &err) != 0) {
		sl_log_error("guard %s: %s", svc, err);
		free(err);
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_guard *g = arg;
	static struct sl_vstats now_total, since;
	static struct sl_hist judged; /* since's, as the analyzer judges */
	struct sl_verdict_window base = {0}, cand = {0};
	int64_t now = (int64_t)time(NULL);
	uint64_t now_ms = sl_ctl_mono_ms();
	char msg[512];

	if (g->ctl->passive) /* a new sluice is taking over: it judges */
		return;
	/* Warming up: the new version is judged from the first look after
	 * the warm-up. A guard resumed near its end may run out first: it
	 * ends then, having judged nothing since the restart. */
	if (g->warm_until_ms != 0) {
		if (now < g->until) {
			if (now_ms + sl_rollout_look_slack(g->interval_ms) >=
			    g->warm_until_ms)
				g->warm_until_ms = 0;
			sl_ctl_version_total(
			    g->ctl, g->version_id, &g->at_switch);
			return;
		}
		snprintf(msg, sizeof msg,
		    "guard %s: ended during its warm-up after a restart; %s "
		    "was not judged since",
		    g->service, g->version);
		end_unjudged(g, msg);
		save_state(g->ctl, g->service);
		return;
	}
	sl_ctl_version_total(g->ctl, g->version_id, &now_total);
	sl_vstats_sub(&since, &now_total, &g->at_switch);
	base.requests = g->base_requests;
	base.errors = g->base_errors;
	base.unanswered = g->base_unanswered;
	base.latency = &g->base_latency;
	/* The baseline's groups are not kept (they are not in the ring it
	 * comes from), and the new version's design effects would be drawn
	 * from them (sl_groups_deffs): 1 for both. */
	sl_verdict_window_of(&cand, &judged, &since);
	sl_verdict_judge(&g->params, g->seq, &base, &cand, &g->last);
	g->have_last = true;
	if (g->last.decision == SL_FAIL) {
		g->state = SWITCHED_BACK;
		guard_stop(g);
		switch_back(g);
		return;
	}
	if (now >= g->until) {
		bool passed = g->last.decision == SL_PASS;

		g->state = passed ? PASSED : INCONCLUSIVE;
		guard_stop(g);
		snprintf(msg, sizeof msg,
		    passed ? "guard %s: %s held for the guard period: %.200s"
		           : "guard %s: %s kept, but the guard period ended "
		             "without a verdict: %.200s",
		    g->service, g->version, g->last.summary);
		sl_event(g->ctl, NULL, msg, NULL,
		    sl_ctl_guard_json(g->ctl, g->service));
		save_state(g->ctl, g->service); /* the guard leaves the file */
	}
}

/*
 * A guard of SVC from PREVIOUS to VERSION, watching until UNTIL: its
 * verdict state, its new version's window from now (after its warm-up,
 * if any) and its tick. The caller fills the baseline. NULL when a
 * version is not configured or memory ran out.
 */
static struct sl_guard *
guard_new(struct sl_ctl *ctl, const struct sl_route_service *svc,
    const char *previous, const char *version, int64_t started, int64_t until)
{
	const struct sl_rollout_conf *rc = &svc->conf->rollout;
	struct sl_guard *g;
	struct timeval tv;
	int vi = sl_route_version_index(svc, version);

	if (sl_route_version_index(svc, previous) < 0 || vi < 0)
		return NULL;
	g = sl_xcalloc(1, sizeof *g);
	g->ctl = ctl;
	snprintf(g->service, sizeof g->service, "%s", svc->name);
	snprintf(g->version, sizeof g->version, "%s", version);
	snprintf(g->previous, sizeof g->previous, "%s", previous);
	g->version_id = svc->versions[vi].id;
	g->started = started;
	g->until = until;
	g->state = WATCHING;
	sl_verdict_params_from_conf(&g->params, rc);
	/* The baseline's 4xx are not kept (nor in the state file): a guard
	 * judges 5xx, cut and unanswered requests only. */
	g->params.judge_4xx = false;
	g->seq = sl_verdict_seq_new();
	if (g->seq != NULL)
		sl_verdict_seq_fixed_stable(g->seq);
	sl_ctl_version_total(ctl, g->version_id, &g->at_switch);
	if (rc->warmup_ms > 0)
		g->warm_until_ms = sl_ctl_mono_ms() + rc->warmup_ms;
	g->tick = event_new(ctl->base, -1, EV_PERSIST, tick_cb, g);
	g->interval_ms = rc->interval_ms;
	tv.tv_sec = rc->interval_ms / 1000;
	tv.tv_usec = (rc->interval_ms % 1000) * 1000;
	if (g->seq == NULL || g->tick == NULL || event_add(g->tick, &tv) != 0) {
		guard_stop(g);
		free(g);
		return NULL;
	}
	return g;
}

/* Start guarding SVC after a switch from PREVIOUS to VERSION. */
void
sl_ctl_guard_start(struct sl_ctl *ctl, const struct sl_route_service *svc,
    const char *previous, const char *version)
{
	const struct sl_rollout_conf *rc = &svc->conf->rollout;
	static struct sl_vstats base;
	struct sl_verdict_window judged;
	struct sl_guard *g = sl_ctl_rt(ctl, svc->name)->guard;
	bool was_watching = g != NULL && g->state == WATCHING;
	int64_t now = (int64_t)time(NULL);
	uint32_t seconds;
	int pi;

	sl_ctl_guard_end(ctl, svc->name);
	/* The guard judges for `guard` once its warm-up is over. */
	g = rc->guard_ms == 0
	    ? NULL
	    : guard_new(ctl, svc, previous, version, now,
	          now + (rc->warmup_ms + rc->guard_ms + 999) / 1000);
	if (g == NULL) {
		if (was_watching) /* it leaves the state file */
			save_state(ctl, svc->name);
		return;
	}
	/* The previous stable's behaviour just before the switch: over
	 * `guard`, but at least 10 s, so that a short guard still has a
	 * baseline to judge by (the ring keeps 10 minutes). */
	seconds = rc->guard_ms / 1000;
	if (seconds < 10)
		seconds = 10;
	pi = sl_route_version_index(svc, previous);
	memset(&base, 0, sizeof base);
	if (ctl->series[svc->versions[pi].id] != NULL) {
		sl_ctl_harvest(ctl);
		sl_series_window(
		    ctl->series[svc->versions[pi].id], seconds, &base);
	}
	sl_verdict_window_of(&judged, &g->base_latency, &base);
	g->base_requests = judged.requests;
	g->base_errors = judged.errors;
	g->base_unanswered = judged.unanswered;
	sl_ctl_rt(ctl, svc->name)->guard = g;
	save_state(ctl, svc->name); /* so that a restart resumes it */
}

/*
 * Why a guard of VERSION against PREVIOUS cannot watch on in SVC (a
 * routing table after a restart or a reload), or NULL: a version is no
 * longer configured, or VERSION is no longer the stable version or is
 * routed at 0% (the saved weights and stable version were not restored:
 * the config's apply). It would judge a version that gets no traffic,
 * and pass. Static text.
 */
static const char *
guard_unfit(const struct sl_route_service *svc, const char *version,
    const char *previous)
{
	int vi = sl_route_version_index(svc, version);

	if (vi < 0)
		return "its version is no longer configured";
	if (sl_route_version_index(svc, previous) < 0)
		return "the version it would switch back to is no longer "
		       "configured";
	if (svc->stable != (size_t)vi)
		return "its version is no longer the stable one";
	if (svc->versions[vi].weight == 0)
		return "its version is routed at 0%";
	return NULL;
}

/* After a reload: a watching guard that cannot watch on (guard_unfit)
 * ends, with the reason, logged and recorded as an event; returns how
 * many ended (the caller saves the state file then). A reload that only
 * turns `guard` off lets a watching guard run to its end. */
unsigned
sl_ctl_guards_check(struct sl_ctl *ctl)
{
	struct sl_route_table *t = sl_route_current();
	unsigned ended = 0;
	size_t i;

	for (i = 0; i < ctl->nrt; i++) {
		struct sl_guard *g = ctl->rt[i]->guard;
		const struct sl_route_service *svc;
		const char *why;
		char msg[400];

		if (g == NULL || g->state != WATCHING)
			continue;
		svc = sl_route_service_by_name(t, g->service);
		why = svc == NULL ? "its service is no longer configured"
		                  : guard_unfit(svc, g->version, g->previous);
		if (why == NULL)
			continue;
		snprintf(msg, sizeof msg,
		    "guard %s: ended after a reload: %s; %s is not judged "
		    "further",
		    g->service, why, g->version);
		sl_log_warn("%s", msg);
		end_unjudged(g, msg);
		ended++;
	}
	return ended;
}

bool
sl_ctl_guard_capture(
    struct sl_ctl *ctl, const char *svc, struct sl_guard_saved *out)
{
	const struct sl_guard *g = sl_ctl_rt(ctl, svc)->guard;

	if (g == NULL || g->state != WATCHING)
		return false;
	snprintf(out->version, sizeof out->version, "%s", g->version);
	snprintf(out->previous, sizeof out->previous, "%s", g->previous);
	out->started = g->started;
	out->until = g->until;
	out->requests = g->base_requests;
	out->errors = g->base_errors;
	out->unanswered = g->base_unanswered;
	out->latency = g->base_latency;
	out->segment = sl_verdict_seq_segment(g->seq);
	return true;
}

void
sl_ctl_guard_restore(
    struct sl_ctl *ctl, const char *name, const struct sl_guard_saved *saved)
{
	const struct sl_route_service *svc =
	    sl_route_service_by_name(sl_route_current(), name);
	int64_t now = (int64_t)time(NULL);
	struct sl_guard *g;
	const char *why;
	char msg[400];

	if (svc == NULL)
		return;
	if (now >= saved->until) {
		sl_log_info("guard %s: its period ended while sluice was "
		            "stopped; %s stays stable",
		    name, saved->version);
		return;
	}
	if (now + (int64_t)(svc->conf->rollout.warmup_ms / 1000) >=
	    saved->until) {
		sl_log_info("guard %s: not resumed: less than its warm-up "
		            "was left",
		    name);
		return;
	}
	why = svc->conf->rollout.guard_ms == 0
	    ? "guard is off in the config"
	    : guard_unfit(svc, saved->version, saved->previous);
	if (why != NULL) {
		sl_log_warn("guard %s: not resumed: %s", name, why);
		return;
	}
	sl_ctl_guard_end(ctl, name);
	g = guard_new(ctl, svc, saved->previous, saved->version, saved->started,
	    saved->until);
	if (g == NULL) {
		sl_log_warn("guard %s: not resumed: out of memory", name);
		return;
	}
	g->base_requests = saved->requests;
	g->base_errors = saved->errors;
	g->base_unanswered = saved->unanswered;
	g->base_latency = saved->latency;
	sl_verdict_seq_resume(g->seq, saved->segment);
	sl_ctl_rt(ctl, name)->guard = g;
	snprintf(msg, sizeof msg,
	    "guard %s: resumed after a restart: %s watched against %s "
	    "until %s, with a fresh window",
	    name, g->version, g->previous, sl_ctl_isotime(g->until));
	sl_event(ctl, NULL, msg, NULL, sl_ctl_guard_json(ctl, name));
}

/* End SVC's guard (a new switch, a rollout, shutdown). */
void
sl_ctl_guard_end(struct sl_ctl *ctl, const char *svc)
{
	struct sl_svc_rt *rt = sl_ctl_rt(ctl, svc);

	if (rt->guard == NULL)
		return;
	guard_stop(rt->guard);
	free(rt->guard);
	rt->guard = NULL;
}

/* The guard of SVC as JSON (null when none). */
json_t *
sl_ctl_guard_json(struct sl_ctl *ctl, const char *svc)
{
	struct sl_svc_rt *rt = sl_ctl_rt(ctl, svc);
	struct sl_guard *g = rt->guard;
	json_t *o;

	if (g == NULL)
		return json_null();
	o = json_pack("{s:s,s:s,s:s,s:s}", "version", g->version, "previous",
	    g->previous, "state", guard_states[g->state], "until",
	    sl_ctl_isotime(g->until));
	json_object_set_new(
	    o, "baseline_requests", json_integer((json_int_t)g->base_requests));
	json_object_set_new(o, "last_verdict",
	    g->have_last ? json_string(g->last.summary) : json_null());
	json_object_set_new(
	    o, "warming_up", json_boolean(g->warm_until_ms != 0));
	return o;
}

void
sl_ctl_guard_metrics(struct sl_ctl *ctl, struct evbuffer *out)
{
	const struct sl_route_table *t = sl_route_current();
	struct evbuffer *backs = evbuffer_new();
	size_t i;

	if (backs == NULL)
		return;
	evbuffer_add_printf(out,
	    "# HELP sluice_guard_state State of the service's blue/green "
	    "guard: 1 watching, 2 passed, 3 switched_back, 4 ended, "
	    "5 inconclusive.\n"
	    "# TYPE sluice_guard_state gauge\n");
	evbuffer_add_printf(backs,
	    "# HELP sluice_guard_switch_backs_total Switches back to the "
	    "previous stable version by the guard.\n"
	    "# TYPE sluice_guard_switch_backs_total counter\n");
	/* Every service with a guard in its config, and any that has one
	 * running (its config lost the key in a reload). */
	for (i = 0; i < t->nservices; i++) {
		const struct sl_svc_rt *rt =
		    sl_ctl_rt(ctl, t->services[i].name);
		const struct sl_guard *g = rt->guard;

		if (t->services[i].conf->rollout.guard_ms == 0 && g == NULL &&
		    rt->guard_switch_backs == 0)
			continue;
		evbuffer_add_printf(backs,
		    "sluice_guard_switch_backs_total{service=\"%s\"} %llu\n",
		    rt->name, (unsigned long long)rt->guard_switch_backs);
		if (g == NULL)
			continue;
		evbuffer_add_printf(out,
		    "sluice_guard_state{service=\"%s\",version=\"%s\","
		    "previous=\"%s\"} %d\n",
		    g->service, g->version, g->previous, (int)g->state + 1);
	}
	evbuffer_add_buffer(out, backs);
	evbuffer_free(backs);
}
