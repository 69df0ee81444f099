/*
 * rollouts.c — running rollouts on the control thread.
 *
 * A rollout is the state machine of analysis/rollout.c driven by a timer:
 * every `interval` the analyzer compares what the canary and the stable
 * version did since the current step began (cumulative totals minus the
 * totals captured when the step began, so both are judged over exactly
 * the same time window) and the state machine's answer — next weight,
 * promotion, revert — becomes a new routing table, published atomically.
 *
 * While a rollout runs it holds its service's lock as owner "rollout", so
 * nobody changes the weights under it; the rollout commands themselves are
 * always allowed. Progress is saved in the state file and a restart
 * resumes at the same step with a fresh analysis window.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "analysis/rollout.h"
#include "conf/log.h"
#include "conf/xmalloc.h"
#include "control/ctl.h"
#include "proxy/route.h"

#define ROLLOUT_LOCK_TTL (7 * 24 * 3600)

struct sl_rollout_run {
	struct sl_ctl *ctl;
	struct sl_rollout *ro;
	struct event *tick;
	uint32_t stable_id, canary_id;
	struct sl_vstats base_stable; /* totals when the step began */
	struct sl_vstats base_canary;
	uint64_t base_ms; /* when they were taken (monotonic ms) */
	/* The sequence as it was before the latest decision, to put back
	 * with the rollout if the decision cannot be carried out. */
	struct sl_verdict_seq *seq_undo;
	/* The step whose want of canary traffic was said (+1; 0: none), so
	 * that it is said once a step. */
	uint32_t starved_step;
};

void
sl_ctl_rollout_mark_ids(const struct sl_rollout_run *run, uint8_t *used)
{
	used[run->stable_id] = 1;
	used[run->canary_id] = 1;
}

/* Capture the totals the next window starts from. */
static void
capture_base(struct sl_rollout_run *run)
{
	sl_ctl_version_total(run->ctl, run->stable_id, &run->base_stable);
	sl_ctl_version_total(run->ctl, run->canary_id, &run->base_canary);
	run->base_ms = sl_ctl_mono_ms();
}

/* Weights in hundredths for the service, per the rollout's ACTION. */
static struct sl_route_table *
table_for(
    struct sl_rollout_run *run, enum sl_rollout_action action, char **errp)
{
	struct sl_route_table *cur = sl_route_current();
	struct sl_route_service *svc =
	    sl_route_service_by_name(cur, run->ro->service);
	uint32_t weights[256];
	int ci, bi;
	size_t stable;

	if (svc == NULL) {
		*errp = sl_xasprintf("service '%s' is gone", run->ro->service);
		return NULL;
	}
	ci = sl_route_version_index(svc, run->ro->canary);
	bi = sl_route_version_index(svc, run->ro->baseline);
	if (ci < 0 || bi < 0 || svc->nversions > 256) {
		*errp = sl_xasprintf("version '%s' or '%s' is gone",
		    run->ro->canary, run->ro->baseline);
		return NULL;
	}
	memset(weights, 0, sizeof weights);
	stable = (size_t)bi;
	switch (action) {
	case SL_RA_SET_WEIGHT:
		weights[ci] = sl_rollout_weight(run->ro);
		weights[bi] = SL_WEIGHT_TOTAL - weights[ci];
		break;
	case SL_RA_PROMOTE:
		weights[ci] = SL_WEIGHT_TOTAL;
		stable = (size_t)ci;
		break;
	case SL_RA_REVERT:
	default:
		weights[bi] = SL_WEIGHT_TOTAL;
		break;
	}
	return sl_route_with_weights(
	    cur, (size_t)(svc - cur->services), weights, stable, errp);
}

/* The rollout's lock on RT goes: the starter's own lock, set aside when
 * the rollout began, comes back if it is still good. */
static void
give_back_lock(struct sl_svc_rt *rt)
{
	if (strcmp(rt->lock_owner, SL_ROLLOUT_OWNER) == 0) {
		if (rt->held_owner[0] != '\0' &&
		    rt->held_expires > (int64_t)time(NULL)) {
			memcpy(rt->lock_owner, rt->held_owner,
			    sizeof rt->lock_owner);
			rt->lock_expires = rt->held_expires;
		} else {
			rt->lock_owner[0] = '\0';
			rt->lock_expires = 0;
		}
	}
	rt->held_owner[0] = '\0';
	rt->held_expires = 0;
}

/* Stop the timer and release the lock of an ended rollout. */
static void
finish(struct sl_rollout_run *run)
{
	if (run->tick != NULL) {
		event_free(run->tick);
		run->tick = NULL;
	}
	give_back_lock(sl_ctl_rt(run->ctl, run->ro->service));
}

/* The rollout as JSON. */
static json_t *
rollout_json(struct sl_rollout_run *run, bool full)
{
	const struct sl_rollout *ro = run->ro;
	json_t *o, *steps = json_array(), *vs = json_array(), *counts;
	uint32_t i, n;
	uint64_t elapsed;

	for (i = 0; i < ro->nsteps; i++)
		json_array_append_new(steps, json_real(ro->steps[i] / 100.0));
	counts = json_pack("{s:I,s:I,s:I}", "pass",
	    (json_int_t)ro->verdict_counts[SL_PASS], "fail",
	    (json_int_t)ro->verdict_counts[SL_FAIL], "inconclusive",
	    (json_int_t)ro->verdict_counts[SL_INCONCLUSIVE]);
	o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:o,s:f,s:s}", "service",
	    ro->service, "canary", ro->canary, "baseline", ro->baseline,
	    "state", sl_rollout_state_name(ro->state), "step",
	    (int)ro->step + 1, "nsteps", (int)ro->nsteps, "steps", steps,
	    "weight",
	    ro->state == SL_RO_PROMOTED
	        ? 100.0
	        : (sl_rollout_final(ro) ? 0.0 : sl_rollout_weight(ro) / 100.0),
	    "started", sl_ctl_isotime(ro->started));
	elapsed = sl_rollout_step_elapsed(ro, sl_ctl_mono_ms());
	/* Unknown for a rollout that had ended before a restart, as its
	 * step_elapsed (the restart is not when its last step began). */
	json_object_set_new(o, "step_started",
	    elapsed == SL_ROLLOUT_ELAPSED_UNKNOWN
	        ? json_null()
	        : json_string(sl_ctl_isotime(ro->step_started)));
	json_object_set_new(o, "step_elapsed",
	    elapsed == SL_ROLLOUT_ELAPSED_UNKNOWN
	        ? json_null()
	        : json_integer((json_int_t)(elapsed / 1000)));
	/* Whole seconds as an integer, as always; 1500ms as 1.5. */
	json_object_set_new(o, "step_time",
	    ro->step_time_ms % 1000 == 0
	        ? json_integer((json_int_t)(ro->step_time_ms / 1000))
	        : json_real(ro->step_time_ms / 1000.0));
	json_object_set_new(o, "interval", json_real(ro->interval_ms / 1000.0));
	json_object_set_new(o, "warmup", json_real(ro->warmup_ms / 1000.0));
	json_object_set_new(o, "warming_up",
	    json_boolean(
	        !sl_rollout_final(ro) && ro->warmup_ms > 0 && !ro->warm));
	json_object_set_new(o, "latency_tolerance_ms",
	    json_real(ro->params.latency_tolerance / 1000.0));
	json_object_set_new(o, "judge_4xx", json_boolean(ro->params.judge_4xx));
	json_object_set_new(o, "ended",
	    ro->ended ? json_string(sl_ctl_isotime(ro->ended)) : json_null());
	json_object_set_new(
	    o, "reason", ro->reason[0] ? json_string(ro->reason) : json_null());
	json_object_set_new(o, "verdict_counts", counts);
	n = full ? ro->nverdicts : (ro->nverdicts > 0 ? 1 : 0);
	for (i = 0; i < n; i++) {
		const struct sl_rollout_verdict *v =
		    &ro->verdicts[(ro->next_verdict + SL_ROLLOUT_KEEP_VERDICTS -
		                      n + i) %
		        SL_ROLLOUT_KEEP_VERDICTS];
		json_t *checks = json_array();
		size_t k;

		for (k = 0; k < v->j.nchecks; k++) {
			const struct sl_check *c = &v->j.checks[k];

			json_array_append_new(checks,
			    json_pack("{s:s,s:s,s:f,s:f,s:f,s:f,s:f,s:I,s:f,"
			              "s:f,s:f,s:f,s:s,s:s}",
			        "name", c->name, "unit", c->unit, "canary",
			        c->canary, "stable", c->stable, "threshold",
			        c->threshold, "statistic", c->statistic, "null",
			        c->null, "n", (json_int_t)c->n, "evalue",
			        c->evalue, "p_value", c->p_value, "alpha",
			        c->alpha, "deff", c->deff, "decision",
			        sl_decision_name(c->decision), "why", c->why));
		}
		json_array_append_new(vs,
		    json_pack("{s:s,s:i,s:i,s:s,s:s,s:o,s:{s:I,s:I}}", "time",
		        sl_ctl_isotime(v->time), "step", (int)v->j.step + 1,
		        "look", (int)v->j.look, "decision",
		        sl_decision_name(v->j.decision), "summary",
		        v->j.summary, "checks", checks, "unjudged", "stable",
		        (json_int_t)v->j.unjudged_stable, "canary",
		        (json_int_t)v->j.unjudged_canary));
	}
	json_object_set_new(o, "verdicts", vs);
	return o;
}

/* The rollout of SVC as JSON (null when none ever ran). */
json_t *
sl_ctl_rollout_json(struct sl_ctl *ctl, const char *svc, bool full)
{
	struct sl_svc_rt *rt = sl_ctl_rt(ctl, svc);

	if (rt->run == NULL)
		return json_null();
	return rollout_json(rt->run, full);
}

/*
 * Apply ACTION, which the rollout's state machine has just decided: new
 * table, state file, event. If the state file cannot be written, nothing
 * is published and the service's record is as before; the caller puts the
 * rollout back as it was (rollback()). Except for the analyzer's revert
 * (WHO NULL): a failing canary leaves at once, saved or not; then the
 * error is returned all the same, for the log, and the event says so.
 */
static int
apply(struct sl_rollout_run *run, enum sl_rollout_action action,
    const struct sl_who *who, const char *what, char **errp)
{
	struct sl_ctl *ctl = run->ctl;
	struct sl_svc_rt *rt = sl_ctl_rt(ctl, run->ro->service);
	struct sl_route_table *t;
	struct sl_svc_rt undo = *rt; /* what a failure puts back */
	bool final = sl_rollout_final(run->ro), unsaved = false;
	json_t *after;

	if (final)
		give_back_lock(rt);
	if (action == SL_RA_NONE) {
		if (sl_state_save(ctl, sl_route_current(), errp) != 0) {
			*rt = undo;
			return -1;
		}
		if (final)
			finish(run);
		sl_event(ctl, who, what, NULL, rollout_json(run, false));
		return 0;
	}
	t = table_for(run, action, errp);
	if (t == NULL) {
		/* A version is gone: nothing to route. The analyzer's revert
		 * still ends the rollout (the caller keeps it ended). */
		if (who == NULL && action == SL_RA_REVERT && final)
			finish(run);
		else
			*rt = undo;
		return -1;
	}
	rt->touched = true;
	if (action == SL_RA_PROMOTE)
		snprintf(rt->previous_stable, sizeof rt->previous_stable, "%s",
		    run->ro->baseline);
	if (sl_state_save(ctl, t, errp) != 0) {
		if (who != NULL || action != SL_RA_REVERT) {
			*rt = undo;
			sl_route_free(t);
			return -1;
		}
		unsaved = true;
		ctl->state_unsaved = true;
	}
	sl_ctl_publish(ctl, t);
	capture_base(run);
	if (final)
		finish(run);
	after = rollout_json(run, false);
	if (unsaved) {
		char *msg = sl_xasprintf(
		    "%s (state file not written: %s)", what, *errp);

		sl_event(ctl, who, msg, NULL, after);
		free(msg);
	} else
		sl_event(ctl, who, what, NULL, after);
	return unsaved ? -1 : 0;
}

/* Keep RUN's rollout and its sequence in SAVED and run->seq_undo, before
 * its state machine decides. */
static void
keep(struct sl_rollout_run *run, struct sl_rollout *saved)
{
	*saved = *run->ro;
	sl_verdict_seq_copy(run->seq_undo, run->ro->seq);
}

/* Put RUN's rollout back as keep() had it, after apply() failed: the
 * sequence too (a step change folds its evidence, a resume restarts it),
 * or the same requests would count twice. */
static void
rollback(struct sl_rollout_run *run, const struct sl_rollout *saved)
{
	*run->ro = *saved; /* (the same seq pointer) */
	sl_verdict_seq_copy(run->ro->seq, run->seq_undo);
}

/*
 * A step whose time is up without a single canary request (answered or
 * not) holds until some come, which may be never: with few distinct
 * sticky keys none may fall in the canary's buckets. Said once a step, as
 * a warning and an event, so that an operator waiting on it learns why.
 */
static void
say_starved(struct sl_rollout_run *run, const struct sl_verdict_window *wc)
{
	struct sl_rollout *ro = run->ro;
	uint64_t now = sl_ctl_mono_ms(), elapsed;
	char msg[480], rules[96] = "";

	if (wc->requests + wc->unanswered > 0 ||
	    run->starved_step == ro->step + 1)
		return;
	/* The window, not only the step, must be that old: a resume or a
	 * restart begins a fresh window, which may not have seen the canary
	 * requests of a step that had them. */
	elapsed = sl_rollout_step_elapsed(ro, now);
	if (elapsed < ro->step_time_ms || now - run->base_ms < ro->step_time_ms)
		return;
	run->starved_step = ro->step + 1;
	if (wc->unjudged > 0)
		snprintf(rules, sizeof rules,
		    " (%llu an override or a pin sent there are not judged)",
		    (unsigned long long)wc->unjudged);
	snprintf(msg, sizeof msg,
	    "rollout %s: no canary requests in step %u/%u (%s at %.2f%%) "
	    "after %.0f s%s: the step holds until some come (with few "
	    "distinct sticky keys, none may fall in the canary's share; "
	    "'rollout abort' or 'set weights' after it ends the wait)",
	    ro->service, ro->step + 1, ro->nsteps, ro->canary,
	    sl_rollout_weight(ro) / 100.0, (double)elapsed / 1000, rules);
	sl_log_warn("%s", msg);
	sl_event(run->ctl, NULL, msg, NULL, NULL);
}

/* One look of the analyzer. */
static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sl_rollout_run *run = arg;
	struct sl_rollout *ro = run->ro;
	static struct sl_vstats now_stable, now_canary, win_stable, win_canary;
	static struct sl_hist lat_stable, lat_canary; /* what is judged */
	struct sl_verdict_window ws = {0}, wc = {0};
	struct sl_deffs ds, dc;
	struct sl_judgement j;
	enum sl_rollout_action action;
	uint32_t step_before = ro->step;
	struct sl_rollout before;
	char *err = NULL, msg[400];

	if (ro->state != SL_RO_RUNNING || run->ctl->passive)
		return;
	/* Warming up: the window begins again at every look until the
	 * warm-up is over, so the step is judged from its end. */
	if (sl_rollout_warming(ro, sl_ctl_mono_ms())) {
		capture_base(run);
		return;
	}
	sl_ctl_version_total(run->ctl, run->stable_id, &now_stable);
	sl_ctl_version_total(run->ctl, run->canary_id, &now_canary);
	sl_vstats_sub(&win_stable, &now_stable, &run->base_stable);
	sl_vstats_sub(&win_canary, &now_canary, &run->base_canary);
	/* What the weights routed, and of its latencies not those the
	 * clients slowed: a client that trickles its requests in, or a QA
	 * group pinned to the canary, must not decide for the users. */
	sl_verdict_window_of(&ws, &lat_stable, &win_stable);
	sl_verdict_window_of(&wc, &lat_canary, &win_canary);
	sl_groups_deffs(&win_stable.groups, &win_canary.groups, &ds, &dc);
	ws.deff_errors = ds.errors;
	ws.deff_latency = ds.latency;
	wc.deff_errors = dc.errors;
	wc.deff_latency = dc.latency;
	if (sl_verdict_judge(&ro->params, ro->seq, &ws, &wc, &j) != 0)
		sl_log_warn("rollout %s: %s", ro->service, j.summary);
	keep(run, &before);
	action = sl_rollout_on_verdict(
	    ro, &j, (int64_t)time(NULL), sl_ctl_mono_ms());
	/* The summary starts with the decision ("pass: ..."). */
	sl_log_info("rollout %s: step %u/%u at %.2f%%: %s", ro->service,
	    step_before + 1, ro->nsteps, ro->steps[step_before] / 100.0,
	    j.summary);
	if (action == SL_RA_NONE) {
		/* Each verdict is an event too, with its evidence. */
		json_t *ev = rollout_json(run, false);

		snprintf(msg, sizeof msg, "verdict %s step %u: %s", ro->service,
		    step_before + 1, sl_decision_name(j.decision));
		sl_event(run->ctl, NULL, msg, NULL, ev);
		say_starved(run, &wc);
		return;
	}
	if (action == SL_RA_SET_WEIGHT)
		snprintf(msg, sizeof msg,
		    "rollout %s: step %u passed, canary "
		    "%s to %.2f%%",
		    ro->service, step_before + 1, ro->canary,
		    sl_rollout_weight(ro) / 100.0);
	else if (action == SL_RA_PROMOTE)
		snprintf(msg, sizeof msg, "rollout %s: promoted %s",
		    ro->service, ro->canary);
	else
		snprintf(msg, sizeof msg, "rollout %s: reverted %s: %s",
		    ro->service, ro->canary, j.summary);
	if (apply(run, action, NULL, msg, &err) != 0) {
		sl_log_error("rollout %s: %s", ro->service, err);
		if (action != SL_RA_REVERT) {
			/* Not advanced: the next look judges again. */
			rollback(run, &before);
			snprintf(msg, sizeof msg,
			    "rollout %s: held at step %u: %s", ro->service,
			    step_before + 1, err);
			sl_event(run->ctl, NULL, msg, NULL,
			    rollout_json(run, false));
		}
		free(err);
	}
}

/* Start the analyzer timer of RUN. */
static int
start_timer(struct sl_rollout_run *run)
{
	struct timeval tv;

	tv.tv_sec = run->ro->interval_ms / 1000;
	tv.tv_usec = (run->ro->interval_ms % 1000) * 1000;
	run->tick = event_new(run->ctl->base, -1, EV_PERSIST, tick_cb, run);
	if (run->tick == NULL)
		return -1;
	return event_add(run->tick, &tv);
}

static void
run_free(struct sl_rollout_run *run)
{
	if (run == NULL)
		return;
	if (run->tick != NULL)
		event_free(run->tick);
	sl_rollout_free(run->ro);
	sl_verdict_seq_free(run->seq_undo);
	free(run);
}

/* A new run for SVC (replacing an ended one). */
static struct sl_rollout_run *
new_run(struct sl_ctl *ctl, const struct sl_route_service *svc,
    const char *canary, const char *baseline, char **errp)
{
	struct sl_rollout_run *run;
	char err[200];
	int ci, bi;

	ci = sl_route_version_index(svc, canary);
	bi = sl_route_version_index(svc, baseline);
	if (ci < 0 || bi < 0) {
		*errp = sl_xasprintf("service '%s' has no version '%s'",
		    svc->name, ci < 0 ? canary : baseline);
		return NULL;
	}
	run = sl_xcalloc(1, sizeof *run);
	run->ctl = ctl;
	run->ro =
	    sl_rollout_new(svc->name, canary, baseline, &svc->conf->rollout,
	        (int64_t)time(NULL), sl_ctl_mono_ms(), err, sizeof err);
	run->seq_undo = sl_verdict_seq_new();
	if (run->ro == NULL || run->seq_undo == NULL) {
		*errp = sl_xstrdup(run->ro == NULL ? err : "out of memory");
		sl_rollout_free(run->ro);
		sl_verdict_seq_free(run->seq_undo);
		free(run);
		return NULL;
	}
	run->stable_id = svc->versions[bi].id;
	run->canary_id = svc->versions[ci].id;
	return run;
}

/* rollout start SVC VERSION. */
static json_t *
cmd_start(struct sl_ctl *ctl, const struct sl_who *who, const char *text,
    struct sl_route_service *svc, const char *version, char **errp)
{
	struct sl_svc_rt *rt = sl_ctl_rt(ctl, svc->name);
	const char *stable = svc->versions[svc->stable].name;
	struct sl_rollout_run *run;
	struct sl_svc_rt undo;
	int64_t now = (int64_t)time(NULL);
	size_t i;
	int ci;

	if (rt->run != NULL && !sl_rollout_final(rt->run->ro)) {
		*errp = sl_xasprintf("a rollout of '%s' is already %s on '%s'",
		    rt->run->ro->canary,
		    sl_rollout_state_name(rt->run->ro->state), svc->name);
		return NULL;
	}
	if (rt->lock_owner[0] != '\0' && rt->lock_expires > now &&
	    strcmp(rt->lock_owner, who->owner) != 0) {
		*errp = sl_xasprintf("service '%s' is locked by '%s' until %s",
		    svc->name, rt->lock_owner,
		    sl_ctl_isotime(rt->lock_expires));
		return NULL;
	}
	ci = sl_route_version_index(svc, version);
	if (ci < 0) {
		*errp = sl_xasprintf(
		    "service '%s' has no version '%s'", svc->name, version);
		return NULL;
	}
	if (!sl_route_current()->conf->global.measure) {
		*errp = sl_xasprintf("measure = no: without latencies the "
		                     "analyzer could never promote '%s'; set "
		                     "measure = yes in [sluice] and reload",
		    version);
		return NULL;
	}
	if ((size_t)ci == svc->stable) {
		*errp = sl_xasprintf("'%s' is already the stable version of "
		                     "'%s'",
		    version, svc->name);
		return NULL;
	}
	for (i = 0; i < svc->nversions; i++) {
		if ((int)i != ci && i != svc->stable &&
		    svc->versions[i].weight != 0) {
			*errp = sl_xasprintf("version '%s' has %.2f%%: a "
			                     "rollout needs every version but "
			                     "'%s' and '%s' at 0",
			    svc->versions[i].name,
			    svc->versions[i].weight / 100.0, version, stable);
			return NULL;
		}
	}
	run = new_run(ctl, svc, version, stable, errp);
	if (run == NULL)
		return NULL;
	/* A canary with users keeps them all: the rollout goes on from the
	 * first step at or above its weight. */
	if (sl_rollout_begin_at(run->ro, svc->versions[ci].weight) != 0) {
		*errp = sl_xasprintf("'%s' already has %.2f%%, more than every "
		                     "step of the rollout below 100: promote "
		                     "it with 'switch %s %s', or lower it with "
		                     "'set weights'",
		    version, svc->versions[ci].weight / 100.0, svc->name,
		    version);
		run_free(run);
		return NULL;
	}
	/* The rollout takes over from a guard, and replaces the record of
	 * the last rollout; both only once it has started. */
	undo = *rt;
	rt->guard = NULL; /* saved without it */
	rt->run = run;
	/* The starter may hold the lock (a pipeline: lock, rollout start,
	 * rollout wait, unlock): it is set aside, not lost. */
	rt->held_owner[0] = '\0';
	rt->held_expires = 0;
	if (rt->lock_owner[0] != '\0' && rt->lock_expires > now &&
	    strcmp(rt->lock_owner, SL_ROLLOUT_OWNER) != 0) {
		memcpy(rt->held_owner, rt->lock_owner, sizeof rt->held_owner);
		rt->held_expires = rt->lock_expires;
	}
	snprintf(rt->lock_owner, sizeof rt->lock_owner, "%s", SL_ROLLOUT_OWNER);
	rt->lock_expires = now + ROLLOUT_LOCK_TTL;
	if (apply(run, SL_RA_SET_WEIGHT, who, text, errp) != 0 ||
	    start_timer(run) != 0) {
		*rt = undo;
		run_free(run);
		if (*errp == NULL)
			*errp = sl_xstrdup("cannot start the analyzer timer");
		return NULL;
	}
	rt->guard = undo.guard;
	sl_ctl_guard_end(ctl, svc->name);
	run_free(undo.run);
	return json_pack("{s:o}", "rollout", rollout_json(run, true));
}

/* A rollout's pause, resume, abort and promote obey the service's lock
 * as every mutating command does: a rollout started under a lock holds
 * the service as 'rollout' and keeps its starter's lock aside, and only
 * that owner (or anyone once it has expired) may steer it. */
static bool
refuse_locked(const struct sl_svc_rt *rt, const struct sl_who *who, char **errp)
{
	int64_t now = (int64_t)time(NULL);
	const char *owner = rt->lock_owner;
	int64_t until = rt->lock_expires;

	if (strcmp(owner, SL_ROLLOUT_OWNER) == 0) {
		owner = rt->held_owner;
		until = rt->held_expires;
	}
	if (owner[0] == '\0' || until <= now || strcmp(owner, who->owner) == 0)
		return false;
	*errp = sl_ctl_locked_error(rt->name, owner, until, now);
	return true;
}

/* Dispatch the rollout commands. */
json_t *
sl_ctl_rollout_cmd(struct sl_ctl *ctl, const struct sl_who *who,
    const char *text, const char *verb, const char *svcname,
    const char *version, char **errp)
{
	struct sl_route_service *svc =
	    sl_route_service_by_name(sl_route_current(), svcname);
	struct sl_svc_rt *rt;
	struct sl_rollout_run *run;
	struct sl_rollout before;
	char err[200];
	int action;

	if (svc == NULL) {
		*errp = sl_xasprintf("unknown service '%s'", svcname);
		return NULL;
	}
	rt = sl_ctl_rt(ctl, svc->name);
	if (strcmp(verb, "show") == 0)
		return json_pack("{s:o}", "rollout",
		    sl_ctl_rollout_json(ctl, svc->name, true));
	if (strcmp(verb, "start") == 0)
		return cmd_start(ctl, who, text, svc, version, errp);
	run = rt->run;
	if (run == NULL) {
		*errp = sl_xasprintf("no rollout on '%s'", svc->name);
		return NULL;
	}
	if (refuse_locked(rt, who, errp))
		return NULL;
	keep(run, &before);
	if (strcmp(verb, "pause") == 0)
		action = sl_rollout_pause(
		    run->ro, sl_ctl_mono_ms(), err, sizeof err);
	else if (strcmp(verb, "resume") == 0)
		action = sl_rollout_resume(
		    run->ro, sl_ctl_mono_ms(), err, sizeof err);
	else if (strcmp(verb, "abort") == 0)
		action = sl_rollout_abort(run->ro, (int64_t)time(NULL),
		    sl_ctl_mono_ms(), "aborted by an operator", err,
		    sizeof err);
	else
		action = sl_rollout_promote(run->ro, (int64_t)time(NULL),
		    sl_ctl_mono_ms(), err, sizeof err);
	if (action < 0) {
		*errp = sl_xstrdup(err);
		return NULL;
	}
	if (strcmp(verb, "resume") == 0)
		capture_base(run); /* a fresh window after a pause */
	if (apply(run, (enum sl_rollout_action)action, who, text, errp) != 0) {
		rollback(run, &before); /* the command changed nothing */
		return NULL;
	}
	return json_pack("{s:o}", "rollout", rollout_json(run, true));
}

/*
 * The step a live rollout restored at STEP goes on from, when its canary
 * is routed at WEIGHT: the config's steps may have changed since the state
 * file was written (or the step is past their end). Then it is the last
 * step not above WEIGHT, and that step takes WEIGHT, so the rollout says
 * what routing does and grows from there (never moving a canary user
 * back). Steps stay increasing.
 */
static uint32_t
align_step(struct sl_rollout *ro, uint32_t step, uint32_t weight)
{
	uint32_t i;

	if ((step < ro->nsteps && ro->steps[step] == weight) || weight == 0)
		return step;
	for (i = 0; i + 1 < ro->nsteps && ro->steps[i + 1] <= weight; i++)
		;
	/* The same step at another weight is what an earlier restart's
	 * alignment left (the state file keeps the step, the config its
	 * weight): said once, at the restart that moved it, not again at
	 * every restart. */
	if (i == step)
		sl_log_info("rollout %s: step %u/%u goes on at %.2f%%, the "
		            "canary's routed weight (the config's step is "
		            "%.2f%%)",
		    ro->service, i + 1, ro->nsteps, weight / 100.0,
		    ro->steps[i] / 100.0);
	else
		sl_log_warn("rollout %s: saved at step %u, but the canary is "
		            "routed at %.2f%%: steps changed; going on from "
		            "step %u/%u at %.2f%%",
		    ro->service, step + 1, weight / 100.0, i + 1, ro->nsteps,
		    weight / 100.0);
	ro->steps[i] = weight;
	return i;
}

/* "25%" or "12.50%" (weights in hundredths), in BUF. */
static const char *
pct_text(char *buf, size_t len, uint32_t w)
{
	if (w % 100 == 0)
		snprintf(buf, len, "%u%%", w / 100);
	else
		snprintf(buf, len, "%u.%02u%%", w / 100, w % 100);
	return buf;
}

/*
 * Is RUN's live rollout routed as it says in SVC (the table in force
 * after WHEN, a restart or a reload): its canary at its step's weight
 * and its baseline the stable version? The saved weights may not have
 * been restored (a version that had weight is gone: the config's apply),
 * and then it would show one weight and route another, and wait for
 * canary requests that never come. Such a rollout is aborted, with the
 * reason, logged and recorded as an event; routing stays as it is. True
 * when it was aborted (the caller saves the state file).
 */
static bool
abort_unrouted(struct sl_rollout_run *run, const struct sl_route_service *svc,
    const char *when)
{
	struct sl_rollout *ro = run->ro;
	int ci = sl_route_version_index(svc, ro->canary);
	int bi = sl_route_version_index(svc, ro->baseline);
	char why[256], msg[512], w1[16], w2[16];

	if (sl_rollout_final(ro) || ci < 0 || bi < 0)
		return false;
	if (svc->versions[ci].weight != sl_rollout_weight(ro))
		snprintf(why, sizeof why,
		    "its canary is routed at %s after %s, not at its step's "
		    "%s (the saved weights were not restored)",
		    pct_text(w1, sizeof w1, svc->versions[ci].weight), when,
		    pct_text(w2, sizeof w2, sl_rollout_weight(ro)));
	else if (svc->stable != (size_t)bi)
		snprintf(why, sizeof why,
		    "its baseline '%s' is not the stable version after %s "
		    "(the saved weights were not restored)",
		    ro->baseline, when);
	else
		return false;
	sl_rollout_abort(
	    ro, (int64_t)time(NULL), sl_ctl_mono_ms(), why, msg, sizeof msg);
	finish(run);
	snprintf(msg, sizeof msg, "rollout %s of %s: aborted: %s", ro->service,
	    ro->canary, why);
	sl_log_warn("%s", msg);
	sl_event(run->ctl, NULL, msg, NULL, rollout_json(run, false));
	return true;
}

/* Restore a rollout from the state file. */
void
sl_ctl_rollout_restore(struct sl_ctl *ctl, const char *svcname,
    const char *canary, const char *baseline, const char *state, uint32_t step,
    int64_t started, int64_t ended, uint32_t windows, const char *reason)
{
	struct sl_route_service *svc =
	    sl_route_service_by_name(sl_route_current(), svcname);
	struct sl_svc_rt *rt = sl_ctl_rt(ctl, svcname);
	struct sl_rollout_run *run;
	char *err = NULL, msg[200];
	enum sl_rollout_state st = sl_rollout_state_by_name(state);
	int ci;

	if (svc == NULL)
		return;
	run = new_run(ctl, svc, canary, baseline, &err);
	if (run == NULL) {
		sl_log_warn("state file: rollout of %s on %s not restored: %s",
		    canary, svcname, err);
		free(err);
		give_back_lock(rt); /* nothing holds the service now */
		return;
	}
	if (st == 0) {
		run_free(run);
		give_back_lock(rt);
		return;
	}
	ci = sl_route_version_index(svc, canary);
	if ((st == SL_RO_RUNNING || st == SL_RO_PAUSED) && ci >= 0)
		step = align_step(run->ro, step, svc->versions[ci].weight);
	sl_rollout_restore(run->ro, st, step, windows, started,
	    (int64_t)time(NULL), sl_ctl_mono_ms());
	run->ro->ended = ended;
	if (sl_rollout_final(run->ro))
		snprintf(run->ro->reason, sizeof run->ro->reason, "%s", reason);
	rt->run = run;
	capture_base(run);
	if (abort_unrouted(run, svc, "the restart"))
		return;
	sl_ctl_rollout_hold(rt);
	if (!sl_rollout_final(run->ro)) {
		if (start_timer(run) != 0)
			sl_log_error(
			    "rollout %s: cannot start the timer", svcname);
		snprintf(msg, sizeof msg,
		    run->ro->state == SL_RO_PAUSED
		        ? "rollout %s: restored %s, paused at step %u/%u "
		          "(%.2f%%), after a restart"
		        : "rollout %s: resumed %s at step %u/%u (%.2f%%) "
		          "after a restart, with a fresh analysis window",
		    svcname, canary, run->ro->step + 1, run->ro->nsteps,
		    sl_rollout_weight(run->ro) / 100.0);
		sl_event(ctl, NULL, msg, NULL, rollout_json(run, false));
	}
}

bool
sl_ctl_rollout_running(const struct sl_svc_rt *rt)
{
	return rt->run != NULL && !sl_rollout_final(rt->run->ro);
}

bool
sl_ctl_rollout_hold(struct sl_svc_rt *rt)
{
	int64_t now = (int64_t)time(NULL);

	if (!sl_ctl_rollout_running(rt))
		return false;
	if (strcmp(rt->lock_owner, SL_ROLLOUT_OWNER) != 0) {
		if (rt->lock_owner[0] != '\0' && rt->lock_expires > now &&
		    rt->held_owner[0] == '\0') {
			memcpy(rt->held_owner, rt->lock_owner,
			    sizeof rt->held_owner);
			rt->held_expires = rt->lock_expires;
		}
		snprintf(rt->lock_owner, sizeof rt->lock_owner, "%s",
		    SL_ROLLOUT_OWNER);
	}
	rt->lock_expires = now + ROLLOUT_LOCK_TTL;
	return true;
}

/* After a reload, rollouts whose versions vanished, that measure = no
 * leaves blind or that are no longer routed as they say are aborted;
 * returns how many (the caller saves the state file then). The record of
 * a removed service's rollout goes, ended or not, with the rest of the
 * service's runtime state (forget_service in state.c): a reload that
 * brings the service back starts it afresh. */
unsigned
sl_ctl_rollouts_check(struct sl_ctl *ctl)
{
	unsigned aborted = 0;
	size_t i;

	for (i = 0; i < ctl->nrt; i++) {
		struct sl_rollout_run *run = ctl->rt[i]->run;
		struct sl_route_service *svc;
		char err[200], msg[480], removed[200];
		const char *why;
		char *e = NULL;
		bool gone, canary_gone;

		if (run == NULL)
			continue;
		svc = sl_route_service_by_name(
		    sl_route_current(), run->ro->service);
		if (svc == NULL && sl_rollout_final(run->ro)) {
			run_free(run);
			ctl->rt[i]->run = NULL;
			continue;
		}
		if (sl_rollout_final(run->ro))
			continue;
		canary_gone = svc == NULL ||
		    sl_route_version_index(svc, run->ro->canary) < 0;
		gone = canary_gone ||
		    sl_route_version_index(svc, run->ro->baseline) < 0;
		if (gone) {
			if (svc == NULL)
				snprintf(removed, sizeof removed,
				    "its service was removed by a reload");
			else
				snprintf(removed, sizeof removed,
				    "the %s '%s' was removed by a reload",
				    canary_gone ? "canary" : "stable version",
				    canary_gone ? run->ro->canary
				                : run->ro->baseline);
			why = removed;
		} else if (!sl_route_current()->conf->global.measure)
			why = "measure = no since a reload: the analyzer has "
			      "no latencies";
		else {
			if (abort_unrouted(run, svc, "a reload"))
				aborted++;
			continue;
		}
		sl_rollout_abort(run->ro, (int64_t)time(NULL), sl_ctl_mono_ms(),
		    why, err, sizeof err);
		snprintf(msg, sizeof msg, "rollout %s of %s: aborted: %s",
		    run->ro->service, run->ro->canary, why);
		aborted++;
		/* Both versions still there: the canary goes to 0%, as an
		 * operator's abort does (apply records the event). */
		if (!gone) {
			if (apply(run, SL_RA_REVERT, NULL, msg, &e) != 0) {
				sl_log_error(
				    "rollout %s: %s", run->ro->service, e);
				free(e);
			}
			continue;
		}
		finish(run);
		sl_event(ctl, NULL, msg, NULL, rollout_json(run, false));
		if (svc == NULL) {
			run_free(run);
			ctl->rt[i]->run = NULL;
		}
	}
	return aborted;
}

/* Free every rollout (shutdown). */
void
sl_ctl_rollouts_stop(struct sl_ctl *ctl)
{
	size_t i;

	for (i = 0; i < ctl->nrt; i++) {
		run_free(ctl->rt[i]->run);
		ctl->rt[i]->run = NULL;
		sl_ctl_guard_end(ctl, ctl->rt[i]->name);
	}
}

/* The state file line of SVC's rollout. */
const char *
sl_ctl_rollout_state_line(struct sl_ctl *ctl, const char *svc)
{
	static char line[512];
	struct sl_svc_rt *rt = sl_ctl_rt(ctl, svc);
	const struct sl_rollout *ro;
	size_t n;

	line[0] = '\0';
	if (rt->run == NULL)
		return line;
	ro = rt->run->ro;
	snprintf(line, sizeof line, "%s %s %s %u %lld %lld %u", ro->canary,
	    ro->baseline, sl_rollout_state_name(ro->state), ro->step,
	    (long long)ro->started, (long long)ro->ended,
	    sl_verdict_seq_segment(ro->seq));
	/* An ended rollout's reason, on one line of printable characters
	 * (show rollout and rollout wait give it after a restart). */
	if (sl_rollout_final(ro) && ro->reason[0] != '\0') {
		n = strlen(line);
		snprintf(line + n, sizeof line - n, " %s", ro->reason);
		for (; line[n] != '\0'; n++) {
			if ((unsigned char)line[n] < 0x20 || line[n] == 0x7f)
				line[n] = ' ';
		}
	}
	return line;
}

/* Rollout metric families: each family's samples are contiguous, as
 * the exposition format wants, so the three are built side by side. */
void
sl_ctl_rollout_metrics(struct sl_ctl *ctl, struct evbuffer *out)
{
	static const char *results[] = {"inconclusive", "pass", "fail"};
	struct evbuffer *steps = evbuffer_new(), *verdicts = evbuffer_new();
	size_t i, k;

	evbuffer_add_printf(out,
	    "# HELP sluice_rollout_state State of the latest rollout: "
	    "1 running, 2 paused, 3 promoted, 4 reverted, 5 aborted.\n"
	    "# TYPE sluice_rollout_state gauge\n");
	evbuffer_add_printf(steps,
	    "# HELP sluice_rollout_step Current step of the latest rollout, "
	    "1-based.\n# TYPE sluice_rollout_step gauge\n");
	evbuffer_add_printf(verdicts,
	    "# HELP sluice_rollout_verdicts_total Analyzer verdicts of the "
	    "latest rollout, by result.\n"
	    "# TYPE sluice_rollout_verdicts_total counter\n");
	for (i = 0; i < ctl->nrt; i++) {
		const struct sl_rollout *ro;

		if (ctl->rt[i]->run == NULL)
			continue;
		ro = ctl->rt[i]->run->ro;
		evbuffer_add_printf(out,
		    "sluice_rollout_state{service=\"%s\",canary=\"%s\"} %d\n",
		    ro->service, ro->canary, (int)ro->state);
		evbuffer_add_printf(steps,
		    "sluice_rollout_step{service=\"%s\",canary=\"%s\"} %u\n",
		    ro->service, ro->canary, ro->step + 1);
		for (k = 0; k < 3; k++)
			evbuffer_add_printf(verdicts,
			    "sluice_rollout_verdicts_total{service=\"%s\","
			    "result=\"%s\"} %llu\n",
			    ro->service, results[k],
			    (unsigned long long)ro->verdict_counts[k]);
	}
	evbuffer_add_buffer(out, steps);
	evbuffer_add_buffer(out, verdicts);
	evbuffer_free(steps);
	evbuffer_free(verdicts);
}
