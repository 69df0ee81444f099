/*
 * verdict.h — the analyzer's judging core: is the canary worse than the
 * stable version, better than its limits, or is it too early to say?
 *
 * Every `interval` the rollout state machine hands sl_verdict_judge() what
 * each version did since the current step began (requests, errors, latency
 * histogram). Four checks run; each says PASS, FAIL or INCONCLUSIVE and
 * carries its evidence (struct sl_check):
 *
 *   error_rate        absolute guard: the canary's error rate is above
 *                     max_error_rate.
 *   error_vs_stable   the canary's error rate is above
 *                     max(stable + error_margin, stable * error_ratio);
 *                     here requests left unanswered (the client went
 *                     away first) count as failed, on both sides.
 *                     error_rate holds instead of failing while the
 *                     stable version is proven above max_error_rate too:
 *                     trouble both share is not the canary's doing.
 *   latency_quantile  the canary's latency_quantile is above
 *                     max(max_latency_ratio x the stable's, the stable's +
 *                     latency_tolerance).
 *   latency_shift     a canary request is slower than a stable one with
 *                     probability above max_slower_prob (the Mann-Whitney
 *                     effect size; latencies within latency_tolerance of
 *                     each other are ties, and ties count half): the
 *                     whole distribution moved.
 *
 * Method (bench/SIMULATION.md has the justification and the measurements):
 * each check is a one-sided sequential test whose statistic is an
 * e-process — a mixture likelihood ratio over a grid of alternatives that
 * is a supermartingale while the canary is fine — so by Ville's inequality
 * it crosses 1/a with probability at most a however often it is looked at.
 * A check FAILs only when that happens: a canary is never reverted on a
 * point estimate. The rollout's false-revert budget `alpha` is split
 * equally between the four checks (Bonferroni); evidence is carried from
 * step to step through a weighted sum of e-processes restarted at each step
 * (and at each fresh window within one: a resume, a restore), so the
 * budget holds for the whole rollout, all looks and all steps.
 * Nuisance quantities of the stable version (its error rate, its latency
 * quantile) enter through anytime-valid confidence bounds that take a fixed
 * share of the check's budget. One number decides each check: FAIL when
 * the e-value reaches 1/alpha_check (at any look, with no minimum of
 * requests: a few can prove a disaster); PASS when each version has
 * min_requests, the e-value is below 1 (the data favour "canary fine")
 * and the canary's measured value is within its limit; INCONCLUSIVE
 * otherwise (too little data, or leaning bad but not proven: the state
 * machine should hold the step and look again).
 *
 * Nothing here allocates except sl_verdict_seq_new(); nothing is shared
 * between threads. Runs on the control thread.
 */
#ifndef SL_VERDICT_H
#define SL_VERDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analysis/histogram.h"

struct sl_rollout_conf;
struct sl_verdict_seq;
struct sl_vstats;

enum sl_decision {
	SL_INCONCLUSIVE = 0, /* not enough data, or a bad look not yet proven */
	SL_PASS,             /* enough data, every limit respected */
	SL_FAIL,             /* the canary is worse, beyond reasonable doubt */
};

enum sl_check_id {
	SL_CHECK_ERROR_RATE = 0,
	SL_CHECK_ERROR_VS_STABLE,
	SL_CHECK_LATENCY_QUANTILE,
	SL_CHECK_LATENCY_SHIFT,
	SL_NCHECKS
};

/* What one version did over the analysis window (since the step began). */
struct sl_verdict_window {
	uint64_t requests; /* answered requests */
	uint64_t errors;   /* of which errors (5xx); <= requests */
	/* Requests the client gave up on before any answer came. Not in
	 * REQUESTS: error_vs_stable counts them as failed requests of their
	 * version, against the stable version's own share (users leave
	 * some requests in any version; a version that hangs until its
	 * clients reset has nothing but these); error_rate leaves them
	 * out, since its limit is absolute. */
	uint64_t unanswered;
	/* 4xx among REQUESTS, not in ERRORS: error_vs_stable counts them
	 * as errors with judge_4xx. */
	uint64_t client_errors;
	/* Design effects of the error rate and of the latencies (>= 1; 0
	 * is taken as 1): a sticky split sends all of a user's requests to
	 * one version, so they are not independent observations, and a few
	 * users' own differences would read as the version's. Each test
	 * takes N requests as N / deff independent ones
	 * (sl_groups_deff_errors, sl_groups_deff_latency). */
	double deff_errors, deff_latency;
	/* Their latencies; NULL when not measured (latency checks are then
	 * inconclusive). Not modified; must be a self-consistent snapshot. */
	const struct sl_hist *latency;
	/* Requests of the version an override or a pin routed, answered or
	 * not: in none of the above (the weights did not draw them), only
	 * reported (sl_judgement). */
	uint64_t unjudged;
};

/*
 * W's counts from V, a window of one version's counters, as the analyzer
 * judges them: the requests the weights routed, not those an override or
 * a pin did (SL_VSTATS_HIDDEN); *LATENCY their latencies, but those their
 * clients slowed, and W->latency pointing to it. W's design effects are
 * left as they are.
 */
void sl_verdict_window_of(struct sl_verdict_window *w, struct sl_hist *latency,
    const struct sl_vstats *v);

/* latency_tolerance's default, µs: see sl_verdict_params. */
#define SL_LATENCY_TOLERANCE_DEFAULT 250.0

struct sl_verdict_params {
	uint32_t min_requests;    /* per version before PASS; 200 */
	double max_error_rate;    /* absolute guard, fraction (0,1); 0.01 */
	double max_latency_ratio; /* > 1; 1.5 */
	double latency_quantile;  /* (0,1); 0.99 */
	double alpha;             /* false-revert budget per rollout; 0.01 */
	double error_margin;      /* tolerated extra error rate; 0.001 */
	double error_ratio;       /* tolerated error rate factor, >= 1; 1.5 */
	double max_slower_prob;   /* latency_shift limit, [0.5,1); 0.55 */
	/* µs, >= 0: latencies this close are a tie for latency_shift, and
	 * latency_quantile's limit is at least this far above the stable's
	 * quantile. SL_LATENCY_TOLERANCE_DEFAULT. */
	double latency_tolerance;
	/* 4xx responses are errors too for error_vs_stable (the relative
	 * check only: a service's own share of 4xx is no limit's business);
	 * false by default. */
	bool judge_4xx;
};

/* One check's verdict and evidence. */
struct sl_check {
	const char *name; /* "error_rate", "error_vs_stable", ... */
	/* Unit of canary, stable and threshold: "fraction", "us" or
	 * "probability". */
	const char *unit;
	double canary;    /* the compared quantity, canary's value */
	double stable;    /* the same for the stable version */
	double threshold; /* the canary's limit, from the point estimates */
	/*
	 * The sequential test: `statistic` is the observed per-observation
	 * rate it tests (error rate; share of canary requests slower than the
	 * latency limit; share of canary-vs-stable pairs where the canary is
	 * slower), `null` the largest value it may have while the canary is
	 * fine (conservative: the stable's nuisance values are replaced by
	 * their confidence bounds), over `n` observations.
	 */
	double statistic;
	double null;
	uint64_t n;
	double evalue;  /* evidence against "canary fine", whole rollout */
	double p_value; /* anytime-valid: min(1, 1 / evalue) */
	/* The design effect the test applied (1: requests taken as
	 * independent; sl_verdict_window). */
	double deff;
	double alpha; /* this check's level: FAIL when p_value <= alpha */
	enum sl_decision decision;
	char why[96]; /* one line for humans */
};

struct sl_judgement {
	enum sl_decision decision; /* FAIL if any check fails; PASS if all
	                              pass; INCONCLUSIVE otherwise */
	struct sl_check checks[SL_NCHECKS]; /* indexed by enum sl_check_id */
	size_t nchecks;                     /* SL_NCHECKS */
	uint32_t step;                      /* 0-based step of this look */
	uint32_t look;                      /* 1-based look within the step */
	/* The windows' unjudged requests (sl_verdict_window): left out. */
	uint64_t unjudged_stable, unjudged_canary;
	char summary[160];
};

/* Fill p with the defaults listed above. */
void sl_verdict_params_default(struct sl_verdict_params *p);

/*
 * Fill p from a rollout section: its min_requests, max_error_rate,
 * max_latency_ratio, latency_quantile and latency_tolerance, error_margin =
 * max_error_rate / 10 and the other defaults.
 */
void sl_verdict_params_from_conf(
    struct sl_verdict_params *p, const struct sl_rollout_conf *rc);

/*
 * Check p; returns 0, or -1 with a reason in err (a caller's buffer of
 * errlen bytes, may be NULL).
 */
int sl_verdict_params_check(
    const struct sl_verdict_params *p, char *err, size_t errlen);

/*
 * New sequential state for one rollout, at its first step (about 41 KiB:
 * it keeps the previous look's histograms). NULL if memory ran out. The
 * caller owns it; free with sl_verdict_seq_free().
 */
struct sl_verdict_seq *sl_verdict_seq_new(void);

/* Free seq (NULL is fine). */
void sl_verdict_seq_free(struct sl_verdict_seq *seq);

/* Make DST what SRC is (both from sl_verdict_seq_new): a copy to put a
 * sequence back after a decision that could not be carried out. */
void sl_verdict_seq_copy(
    struct sl_verdict_seq *dst, const struct sl_verdict_seq *src);

/*
 * The rollout moved to its next step: the windows given to later judge
 * calls start again from zero. Folds the evidence of the step that ended
 * into what later steps carry.
 */
void sl_verdict_seq_next_step(struct sl_verdict_seq *seq);

/*
 * The windows given to later judge calls start again from zero within the
 * same step (a resumed or restored rollout): the evidence so far is
 * carried as at a step change, with the next segment's weight.
 */
void sl_verdict_seq_restart(struct sl_verdict_seq *seq);

/* How many fresh windows seq has begun after its first (steps, restarts):
 * what a restored seq must restart past to keep its budget. */
uint32_t sl_verdict_seq_segment(const struct sl_verdict_seq *seq);

/*
 * A restored seq (after a restart) begins a fresh window, and one past
 * the WINDOWS the process before had begun (sl_verdict_seq_segment), so
 * that no share of the budget is spent twice. The evidence gathered
 * before is lost. Past a thousand windows a share is 2^-1000: they are
 * no longer kept apart.
 */
void sl_verdict_seq_resume(struct sl_verdict_seq *seq, uint32_t windows);

/* The same for an ended rollout's seq, which begins no window: it is at
 * the WINDOWS the process before had begun, as it was saved. */
void sl_verdict_seq_restore(struct sl_verdict_seq *seq, uint32_t windows);

/*
 * The stable window given to every judge call is the same fixed sample
 * (the blue/green guard's baseline: the previous stable before the
 * switch). latency_shift then pairs every new canary request with a
 * random value of it; otherwise it would pair only within intervals where
 * both sides grew, i.e. in the first look alone.
 */
void sl_verdict_seq_fixed_stable(struct sl_verdict_seq *seq);

/* 0-based index of the step seq is at. */
uint32_t sl_verdict_seq_step(const struct sl_verdict_seq *seq);

/*
 * Judge one look. stable and canary are cumulative since the current step
 * began: each call must see at least the counts of the previous call of
 * the same step. Fills out (caller's) and updates seq. Returns 0, or -1 on
 * bad input (invalid params, errors > requests, a window that shrank
 * within a step); out then says INCONCLUSIVE with the reason in its summary
 * and seq is unchanged. No allocation.
 */
int sl_verdict_judge(const struct sl_verdict_params *p,
    struct sl_verdict_seq *seq, const struct sl_verdict_window *stable,
    const struct sl_verdict_window *canary, struct sl_judgement *out);

/* "inconclusive", "pass" or "fail". */
const char *sl_decision_name(enum sl_decision d);

/*
 * The judgement as text for logs and sluicectl: the summary, then one line
 * per check with every number. Writes at most len bytes into buf, always
 * NUL-terminated when len > 0. Returns 0, or -1 if it was truncated.
 */
int sl_verdict_format(const struct sl_judgement *j, char *buf, size_t len);

#endif /* SL_VERDICT_H */
