/*
 * rollout.c — the rollout state machine (see rollout.h for the diagram).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/rollout.h"
#include "conf/conf.h"

static const char *state_names[] = {
    "none", "running", "paused", "promoted", "reverted", "aborted"};

const char *
sl_rollout_state_name(enum sl_rollout_state s)
{
	return (unsigned)s < sizeof state_names / sizeof state_names[0]
	    ? state_names[s]
	    : "unknown";
}

enum sl_rollout_state
sl_rollout_state_by_name(const char *name)
{
	for (int s = SL_RO_RUNNING; s <= SL_RO_ABORTED; s++) {
		if (strcmp(state_names[s], name) == 0)
			return (enum sl_rollout_state)s;
	}
	return 0;
}

/* Start a rollout. */
struct sl_rollout *
sl_rollout_new(const char *service, const char *canary, const char *baseline,
    const struct sl_rollout_conf *rc, int64_t now, uint64_t now_ms, char *err,
    size_t errlen)
{
	struct sl_rollout *ro;
	size_t i;

	if (rc->nsteps == 0 || rc->nsteps > SL_ROLLOUT_MAX_STEPS) {
		snprintf(err, errlen, "a rollout needs 1 to %d steps",
		    SL_ROLLOUT_MAX_STEPS);
		return NULL;
	}
	ro = calloc(1, sizeof *ro);
	if (ro == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(ro->service, sizeof ro->service, "%s", service);
	snprintf(ro->canary, sizeof ro->canary, "%s", canary);
	snprintf(ro->baseline, sizeof ro->baseline, "%s", baseline);
	for (i = 0; i < rc->nsteps; i++)
		ro->steps[i] = rc->steps[i];
	ro->nsteps = (uint32_t)rc->nsteps;
	ro->step_time_ms = rc->step_time_ms;
	ro->interval_ms = rc->interval_ms;
	ro->warmup_ms = rc->warmup_ms;
	sl_verdict_params_from_conf(&ro->params, rc);
	if (sl_verdict_params_check(&ro->params, err, errlen) != 0) {
		free(ro);
		return NULL;
	}
	ro->seq = sl_verdict_seq_new();
	if (ro->seq == NULL) {
		snprintf(err, errlen, "out of memory");
		free(ro);
		return NULL;
	}
	ro->state = SL_RO_RUNNING;
	ro->started = now;
	ro->step_started = now;
	ro->step_started_ms = now_ms;
	return ro;
}

int
sl_rollout_begin_at(struct sl_rollout *ro, uint32_t weight)
{
	uint32_t i, j;

	for (i = 0; i < ro->nsteps && ro->steps[i] < SL_WEIGHT_TOTAL; i++) {
		if (ro->steps[i] >= weight) {
			/* The analysis steps past those skipped, as a restore
			 * at this step does: verdicts name the step, and a
			 * restart judges with the same budget. */
			for (j = 0; j < i; j++)
				sl_verdict_seq_next_step(ro->seq);
			ro->step = i;
			return 0;
		}
	}
	return -1;
}

void
sl_rollout_free(struct sl_rollout *ro)
{
	if (ro == NULL)
		return;
	sl_verdict_seq_free(ro->seq);
	free(ro);
}

uint32_t
sl_rollout_weight(const struct sl_rollout *ro)
{
	return ro->steps[ro->step];
}

bool
sl_rollout_final(const struct sl_rollout *ro)
{
	return ro->state == SL_RO_PROMOTED || ro->state == SL_RO_REVERTED ||
	    ro->state == SL_RO_ABORTED;
}

/* Time in the current step, pauses excluded. */
uint64_t
sl_rollout_step_elapsed(const struct sl_rollout *ro, uint64_t now_ms)
{
	uint64_t paused = ro->paused_ms;

	if (sl_rollout_final(ro))
		return ro->ended_elapsed_ms;
	if (ro->state == SL_RO_PAUSED)
		paused += now_ms - ro->pause_began_ms;
	if (now_ms < ro->step_started_ms + paused)
		return 0;
	return now_ms - ro->step_started_ms - paused;
}

/* Begin step STEP now. */
static void
enter_step(struct sl_rollout *ro, uint32_t step, int64_t now, uint64_t now_ms)
{
	ro->step = step;
	ro->step_started = now;
	ro->step_started_ms = now_ms;
	ro->paused_ms = 0;
	ro->warm = false;
}

uint64_t
sl_rollout_look_slack(uint32_t interval_ms)
{
	return interval_ms / 10 < 1000 ? interval_ms / 10 : 1000;
}

/* Has the current step lasted MS, give or take a look's slack? */
static bool
step_lasted(const struct sl_rollout *ro, uint64_t now_ms, uint32_t ms)
{
	return sl_rollout_step_elapsed(ro, now_ms) +
	    sl_rollout_look_slack(ro->interval_ms) >=
	    ms;
}

bool
sl_rollout_warming(struct sl_rollout *ro, uint64_t now_ms)
{
	if (ro->warm || ro->warmup_ms == 0 || ro->state != SL_RO_RUNNING)
		return false;
	if (step_lasted(ro, now_ms, ro->warmup_ms))
		ro->warm = true;
	return true;
}

/* Finish the rollout in STATE. */
static void
end(struct sl_rollout *ro, enum sl_rollout_state state, int64_t now,
    uint64_t now_ms, const char *why)
{
	ro->ended_elapsed_ms = sl_rollout_step_elapsed(ro, now_ms);
	ro->state = state;
	ro->ended = now;
	snprintf(ro->reason, sizeof ro->reason, "%s", why);
}

/* Record a look and act on it. */
enum sl_rollout_action
sl_rollout_on_verdict(struct sl_rollout *ro, const struct sl_judgement *j,
    int64_t now, uint64_t now_ms)
{
	struct sl_rollout_verdict *v;

	if (ro->state != SL_RO_RUNNING)
		return SL_RA_NONE;
	v = &ro->verdicts[ro->next_verdict];
	v->time = now;
	v->j = *j;
	ro->next_verdict = (ro->next_verdict + 1) % SL_ROLLOUT_KEEP_VERDICTS;
	if (ro->nverdicts < SL_ROLLOUT_KEEP_VERDICTS)
		ro->nverdicts++;
	if ((unsigned)j->decision < 3)
		ro->verdict_counts[j->decision]++;

	if (j->decision == SL_FAIL) {
		char why[200];

		snprintf(why, sizeof why, "analyzer: %.180s", j->summary);
		end(ro, SL_RO_REVERTED, now, now_ms, why);
		return SL_RA_REVERT;
	}
	if (j->decision != SL_PASS ||
	    !step_lasted(ro, now_ms, ro->step_time_ms))
		return SL_RA_NONE;
	/* A step at 100% leaves nothing to compare against: reaching it is
	 * the promotion. */
	if (ro->step + 1 >= ro->nsteps ||
	    ro->steps[ro->step + 1] >= SL_WEIGHT_TOTAL) {
		end(ro, SL_RO_PROMOTED, now, now_ms,
		    "every step passed: canary promoted to stable");
		return SL_RA_PROMOTE;
	}
	enter_step(ro, ro->step + 1, now, now_ms);
	sl_verdict_seq_next_step(ro->seq);
	return SL_RA_SET_WEIGHT;
}

/* Refuse a command in a final state. */
static int
refuse_final(
    const struct sl_rollout *ro, const char *cmd, char *err, size_t errlen)
{
	snprintf(err, errlen, "cannot %s: the rollout of %s is already %s", cmd,
	    ro->canary, sl_rollout_state_name(ro->state));
	return -1;
}

int
sl_rollout_pause(
    struct sl_rollout *ro, uint64_t now_ms, char *err, size_t errlen)
{
	if (sl_rollout_final(ro))
		return refuse_final(ro, "pause", err, errlen);
	if (ro->state == SL_RO_PAUSED) {
		snprintf(err, errlen, "the rollout is already paused");
		return -1;
	}
	ro->state = SL_RO_PAUSED;
	ro->pause_began_ms = now_ms;
	return SL_RA_NONE;
}

int
sl_rollout_resume(
    struct sl_rollout *ro, uint64_t now_ms, char *err, size_t errlen)
{
	if (sl_rollout_final(ro))
		return refuse_final(ro, "resume", err, errlen);
	if (ro->state != SL_RO_PAUSED) {
		snprintf(err, errlen, "the rollout is not paused");
		return -1;
	}
	ro->paused_ms += now_ms - ro->pause_began_ms;
	ro->state = SL_RO_RUNNING;
	/* The caller starts a fresh window (what the canary did while
	 * nobody judged it is not this step's evidence). */
	sl_verdict_seq_restart(ro->seq);
	return SL_RA_NONE;
}

int
sl_rollout_abort(struct sl_rollout *ro, int64_t now, uint64_t now_ms,
    const char *why, char *err, size_t errlen)
{
	if (sl_rollout_final(ro))
		return refuse_final(ro, "abort", err, errlen);
	end(ro, SL_RO_ABORTED, now, now_ms, why);
	return SL_RA_REVERT;
}

int
sl_rollout_promote(struct sl_rollout *ro, int64_t now, uint64_t now_ms,
    char *err, size_t errlen)
{
	if (sl_rollout_final(ro))
		return refuse_final(ro, "promote", err, errlen);
	end(ro, SL_RO_PROMOTED, now, now_ms, "promoted by an operator");
	return SL_RA_PROMOTE;
}

/* Resume a restored rollout at STEP with a fresh window. */
void
sl_rollout_restore(struct sl_rollout *ro, enum sl_rollout_state state,
    uint32_t step, uint32_t windows, int64_t started, int64_t now,
    uint64_t now_ms)
{
	uint32_t i;

	ro->started = started;
	ro->state = state;
	enter_step(ro, step < ro->nsteps ? step : ro->nsteps - 1, now, now_ms);
	for (i = 0; i < ro->step; i++)
		sl_verdict_seq_next_step(ro->seq);
	/* The step began before the restart: its fresh window is a new
	 * segment, so the budget of the one cut short is not spent twice;
	 * nor that of any window before (resumes, earlier restarts). An
	 * ended rollout begins none: each restart would count one more. */
	if (sl_rollout_final(ro))
		sl_verdict_seq_restore(ro->seq, windows);
	else
		sl_verdict_seq_resume(ro->seq, windows);
	if (state == SL_RO_PAUSED)
		ro->pause_began_ms = now_ms;
	/* How long its last step lasted was not saved. */
	ro->ended_elapsed_ms = SL_ROLLOUT_ELAPSED_UNKNOWN;
}

const struct sl_rollout_verdict *
sl_rollout_last_verdict(const struct sl_rollout *ro)
{
	if (ro->nverdicts == 0)
		return NULL;
	return &ro->verdicts[(ro->next_verdict + SL_ROLLOUT_KEEP_VERDICTS - 1) %
	    SL_ROLLOUT_KEEP_VERDICTS];
}
