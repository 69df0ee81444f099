/*
 * rollout.h — the rollout state machine: how a canary grows step by step,
 * and what each operator command or analyzer verdict does to it.
 *
 * Pure logic, no I/O and no clock of its own: the control thread feeds it
 * verdicts and commands with the current time and applies the action it
 * returns (a new canary weight, a promotion, a revert) to the routing
 * table. That keeps every transition unit-testable.
 *
 *            start                 verdict PASS and step_time over
 *   (none) ───────► running ───────────────────────► running (next step)
 *                   │  ▲   │ last step passed          │
 *             pause │  │   └──────────► promoted       │ verdict FAIL
 *                   ▼  │ resume                        ▼
 *                  paused ── abort ──► aborted      reverted
 *   promote (operator): running|paused → promoted; abort: → aborted.
 *
 * A step at 100% leaves no stable traffic to compare with, so reaching it
 * is the promotion: after the last step below 100% passes, the canary is
 * promoted (also when the steps end below 100%).
 */
#ifndef SL_ROLLOUT_H
#define SL_ROLLOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "analysis/verdict.h"

#define SL_ROLLOUT_MAX_STEPS     32
#define SL_ROLLOUT_KEEP_VERDICTS 16

enum sl_rollout_state {
	SL_RO_RUNNING = 1,
	SL_RO_PAUSED,
	SL_RO_PROMOTED, /* final: the canary is the stable version at 100% */
	SL_RO_REVERTED, /* final: the analyzer failed the canary; it has 0% */
	SL_RO_ABORTED,  /* final: an operator stopped it; the canary has 0% */
};

/* What the caller must do to the routing table after a transition. */
enum sl_rollout_action {
	SL_RA_NONE = 0,
	SL_RA_SET_WEIGHT, /* canary to weight(), stable gets the rest */
	SL_RA_PROMOTE,    /* canary to 100% and made stable */
	SL_RA_REVERT,     /* canary to 0%, stable to 100% */
};

/* One recorded look, with its evidence. */
struct sl_rollout_verdict {
	int64_t time; /* wall-clock seconds */
	struct sl_judgement j;
};

struct sl_rollout {
	char service[64];
	char canary[64];
	char baseline[64]; /* the stable version when the rollout started */
	enum sl_rollout_state state;
	uint32_t steps[SL_ROLLOUT_MAX_STEPS]; /* hundredths of a percent */
	uint32_t nsteps;
	uint32_t step; /* index into steps */
	uint32_t step_time_ms;
	uint32_t interval_ms;
	uint32_t warmup_ms; /* not judged at the start of each step; 0 = off */
	bool warm;          /* this step's warm-up is over */
	struct sl_verdict_params params;
	struct sl_verdict_seq *seq;

	int64_t started, ended;   /* wall-clock seconds; ended 0 while live */
	uint64_t step_started_ms; /* monotonic ms, for step_time */
	int64_t step_started;     /* wall-clock seconds, for display */
	uint64_t paused_ms;       /* time paused within this step */
	uint64_t pause_began_ms;
	/* Once ended: the time its last step lasted, pauses excluded
	 * (SL_ROLLOUT_ELAPSED_UNKNOWN when it ended before a restart). */
	uint64_t ended_elapsed_ms;
	char reason[200]; /* why it ended */

	struct sl_rollout_verdict verdicts[SL_ROLLOUT_KEEP_VERDICTS];
	uint32_t nverdicts, next_verdict;
	uint64_t verdict_counts[3]; /* by enum sl_decision */
};

/*
 * Start a rollout of CANARY against BASELINE with the steps and limits of
 * RC. Returns a new rollout (first step: SL_RA_SET_WEIGHT), or NULL with a
 * reason in ERR.
 */
struct sl_rollout *sl_rollout_new(const char *service, const char *canary,
    const char *baseline, const struct sl_rollout_conf *rc, int64_t now,
    uint64_t now_ms, char *err, size_t errlen);

void sl_rollout_free(struct sl_rollout *ro);

/*
 * A new rollout whose canary already has WEIGHT (hundredths) begins at the
 * first step that is at least WEIGHT, so no user of the canary goes back
 * to stable. -1 when only a step of 100 (promotion) is: nothing is left
 * to judge.
 */
int sl_rollout_begin_at(struct sl_rollout *ro, uint32_t weight);

/* The canary weight of the current step (hundredths). */
uint32_t sl_rollout_weight(const struct sl_rollout *ro);

/* Is the rollout over (promoted, reverted or aborted)? */
bool sl_rollout_final(const struct sl_rollout *ro);

/*
 * A verdict from the analyzer at NOW_MS: records it, and on FAIL reverts,
 * on PASS after step_time advances (or promotes after the last step).
 * Returns the action to apply. Ignored unless running.
 */
enum sl_rollout_action sl_rollout_on_verdict(struct sl_rollout *ro,
    const struct sl_judgement *j, int64_t now, uint64_t now_ms);

/*
 * Operator commands. Each returns the action (SL_RA_NONE for pause and
 * resume), or -1 with a reason in ERR when the command makes no sense in
 * the current state (e.g. resume while running).
 */
int sl_rollout_pause(
    struct sl_rollout *ro, uint64_t now_ms, char *err, size_t errlen);
int sl_rollout_resume(
    struct sl_rollout *ro, uint64_t now_ms, char *err, size_t errlen);
int sl_rollout_abort(struct sl_rollout *ro, int64_t now, uint64_t now_ms,
    const char *why, char *err, size_t errlen);
int sl_rollout_promote(struct sl_rollout *ro, int64_t now, uint64_t now_ms,
    char *err, size_t errlen);

/*
 * Resume a rollout restored from the state file at STEP (fresh analysis
 * window, evidence restarted). WINDOWS: the analysis windows it had begun
 * after its first (sl_verdict_seq_segment); the fresh window takes the
 * next share of the budget, so restarts never add to it.
 */
void sl_rollout_restore(struct sl_rollout *ro, enum sl_rollout_state state,
    uint32_t step, uint32_t windows, int64_t started, int64_t now,
    uint64_t now_ms);

/*
 * Warm-up: true while the current step is younger than warmup_ms (pauses
 * excluded), and once more at the first look after that, which is where
 * the step's analysis window begins. The caller starts a fresh window and
 * skips the verdict on every true, so nothing a warming canary did is
 * judged. Always false without warmup_ms or unless running.
 */
bool sl_rollout_warming(struct sl_rollout *ro, uint64_t now_ms);

/*
 * How early a look may land and still count as the end of a step_time or
 * a warmup: a tenth of the interval, at most 1 s. Looks are timed from the
 * timer's schedule while a step's clock starts when the look that began
 * it ran, a few ms later; without the slack a step_time that is a
 * multiple of interval (60s and 10s) ended one look late about half the
 * time (70 s).
 */
uint64_t sl_rollout_look_slack(uint32_t interval_ms);

/* Milliseconds spent in the current step, pauses excluded; once the
 * rollout has ended, what its last step lasted, so that it no longer
 * grows (SL_ROLLOUT_ELAPSED_UNKNOWN for one restored already ended). */
#define SL_ROLLOUT_ELAPSED_UNKNOWN UINT64_MAX
uint64_t sl_rollout_step_elapsed(const struct sl_rollout *ro, uint64_t now_ms);

const char *sl_rollout_state_name(enum sl_rollout_state s);

/* The state sl_rollout_state_name() calls NAME, or 0 for none. */
enum sl_rollout_state sl_rollout_state_by_name(const char *name);

/* The most recent verdict (NULL when none yet). */
const struct sl_rollout_verdict *sl_rollout_last_verdict(
    const struct sl_rollout *ro);

#endif
