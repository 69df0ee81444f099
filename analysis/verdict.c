/*
 * verdict.c — the analyzer's judging core: four one-sided sequential tests
 * (error rate against its absolute limit and against the stable version,
 * latency at a quantile, latency across the distribution), each an
 * anytime-valid e-process, combined into PASS / FAIL / INCONCLUSIVE with the
 * evidence attached. See verdict.h for the contract and bench/SIMULATION.md
 * for why this method and how it performs.
 *
 * The one statistical primitive is mix_log_e(): for n observations in
 * [0, 1] summing to s, the log of a uniform mixture, over a grid of
 * alternatives, of the Bernoulli likelihood ratio against a null rate p0.
 * For each alternative p' > p0 the ratio is convex in every observation,
 * so while the observations' mean is <= p0 its expectation is <= 1 per
 * observation: the mixture is a nonnegative supermartingale (a test
 * martingale) and, by Ville's inequality, exceeds 1/a at any time with
 * probability <= a. It needs only (n, s), which is all a cumulative window
 * gives, and it is monotone in s and in p0 — which is what lets
 * conservative plug-ins (confidence bounds of the stable version) keep it
 * valid.
 */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/stats.h"
#include "analysis/verdict.h"
#include "conf/conf.h"

/*
 * The mixture's alternatives: log-odds distances from the null rate. A
 * factor of two between neighbours loses at most 6% of the evidence to
 * the best of them; the range covers 0.55 -> 0.58 (latency shift) up to
 * 0.1% -> 75% (error rate).
 */
static const double grid[] = {0.125, 0.25, 0.5, 1, 2, 4, 8};
#define NGRID (sizeof grid / sizeof grid[0])

/*
 * Share of a check's budget spent on the stable version's confidence
 * bound (error_vs_stable, latency_quantile). The stable version usually
 * has far more requests, so a small share costs little width.
 */
#define NUISANCE_SHARE 0.2

/* Rates are kept this far from 0 and 1 so that logs stay finite. */
#define RATE_EPS 1e-12

/* Reported e-values and p-values stay printable. */
#define EVALUE_MAX 1e300

struct sl_verdict_seq {
	uint32_t step;  /* 0-based step */
	uint32_t looks; /* judge calls since the window began */
	/* 0-based count of fresh windows: every step starts one, and so
	 * does a resume or a restore within a step (sl_verdict_seq_restart).
	 * The restarted e-processes and nuisance budgets are weighted by it,
	 * so the budget holds however often the window starts again. */
	uint32_t segment;
	/*
	 * log of the evidence carried into this step, per check: the sum
	 * over earlier steps k of w_k times the product of the e-values of
	 * steps k .. now-1 (an e-process restarted at every step, averaged
	 * with weights w_k = 2^-(k+1)). The current step's e-value multiplies
	 * it.
	 */
	double log_carry[SL_NCHECKS];
	double log_e[SL_NCHECKS]; /* this step's e-value at the latest look */
	/* latency_shift: canary/stable pairs formed so far this step, and the
	 * sum of their scores (1 canary slower, 1/2 tie, 0 faster). */
	double pairs;
	double pair_sum;
	/* The latency windows at the previous look (zero at step start):
	 * pairs are formed within each interval. */
	struct sl_hist prev_stable;
	struct sl_hist prev_canary;
	/* The stable window is a fixed sample (sl_verdict_seq_fixed_stable):
	 * every new canary request is paired with a random value of it. */
	bool fixed_stable;
};

static const char *const check_names[SL_NCHECKS] = {
    [SL_CHECK_ERROR_RATE] = "error_rate",
    [SL_CHECK_ERROR_VS_STABLE] = "error_vs_stable",
    [SL_CHECK_LATENCY_QUANTILE] = "latency_quantile",
    [SL_CHECK_LATENCY_SHIFT] = "latency_shift",
};

static const char *const check_units[SL_NCHECKS] = {
    [SL_CHECK_ERROR_RATE] = "fraction",
    [SL_CHECK_ERROR_VS_STABLE] = "fraction",
    [SL_CHECK_LATENCY_QUANTILE] = "us",
    [SL_CHECK_LATENCY_SHIFT] = "probability",
};

/* log(exp(a) + exp(b)), for a, b possibly -inf. */
static double
log_add(double a, double b)
{
	double m = a > b ? a : b;

	if (m == -INFINITY)
		return -INFINITY;
	return m + log(exp(a - m) + exp(b - m));
}

/* Log-odds of p, p kept inside (0, 1). */
static double
logit(double p)
{
	if (p < RATE_EPS)
		p = RATE_EPS;
	if (p > 1 - RATE_EPS)
		p = 1 - RATE_EPS;
	return log(p / (1 - p));
}

/*
 * log of the mixture e-value for n observations in [0, 1] summing to s
 * against the null rate p0: alternatives above p0 when up (H0: mean <=
 * p0), below it otherwise (H0: mean >= p0). 0 (e-value 1) when n is 0.
 */
static double
mix_log_e(double n, double s, double p0, bool up)
{
	double eta0, lp0, lq0, acc = -INFINITY;
	size_t i;

	if (!(n > 0))
		return 0;
	eta0 = logit(p0);
	/* log p0 and log(1 - p0) from the clamped log-odds. */
	lp0 = -log1p(exp(-eta0));
	lq0 = -log1p(exp(eta0));
	for (i = 0; i < NGRID; i++) {
		double eta = up ? eta0 + grid[i] : eta0 - grid[i];
		double lp = -log1p(exp(-eta)), lq = -log1p(exp(eta));

		acc = log_add(acc, s * (lp - lp0) + (n - s) * (lq - lq0));
	}
	return acc - log((double)NGRID);
}

/*
 * Anytime-valid upper confidence bound, at level a, on a rate of which x
 * events were seen in n trials: the smallest rate that the "rate is at
 * least p0" test rejects. 1 when n is 0.
 */
static double
rate_upper(double n, double x, double a)
{
	double thr = log(1 / a), lo, hi, mid;
	int i;

	if (!(n > 0) || x >= n)
		return 1;
	hi = logit(1 - RATE_EPS);
	if (mix_log_e(n, x, 1 - RATE_EPS, false) < thr)
		return 1;
	lo = logit(x / n); /* the test is below 1 there: never rejects */
	for (i = 0; i < 64; i++) {
		mid = (lo + hi) / 2;
		if (mix_log_e(n, x, 1 / (1 + exp(-mid)), false) >= thr)
			hi = mid;
		else
			lo = mid;
	}
	return 1 / (1 + exp(-hi));
}

/*
 * The rank j (1-based) such that, with probability >= 1 - a at every n,
 * fewer than j of n values lie below the q-quantile: the smallest count
 * the "rate <= q" test rejects. The j-th smallest value is then an
 * anytime upper confidence bound on the quantile. 0 when even n of n would
 * not be rejected (too few values).
 */
static uint64_t
rank_upper(uint64_t n, double q, double a)
{
	double thr = log(1 / a);
	uint64_t lo, hi, mid;

	if (n == 0 || mix_log_e((double)n, (double)n, q, true) < thr)
		return 0;
	lo = (uint64_t)floor(q * (double)n); /* not rejected: mean below q */
	hi = n;                              /* rejected */
	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		if (mix_log_e((double)n, (double)mid, q, true) >= thr)
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/*
 * rank_upper for N stable latencies worth N / D independent ones: the
 * bound's rank among N / D, as the same share of N. 0 when N / D are too
 * few to bound the quantile.
 */
static uint64_t
stable_rank_upper(uint64_t n, double d, double q, double a)
{
	uint64_t eff, r;

	if (d <= 1)
		return rank_upper(n, q, a);
	eff = (uint64_t)((double)n / d);
	r = rank_upper(eff, q, a);
	if (r == 0)
		return 0;
	r = (uint64_t)ceil((double)r / (double)eff * (double)n);
	return r < n ? r : n;
}

/* The fewest values for which rank_upper(n, q, a) is not 0. */
static uint64_t
rank_needs(double q, double a)
{
	double thr = log(1 / a);
	uint64_t lo = 1, hi = 2;

	while (hi < ((uint64_t)1 << 40) &&
	    mix_log_e((double)hi, (double)hi, q, true) < thr) {
		lo = hi;
		hi *= 2;
	}
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (mix_log_e((double)mid, (double)mid, q, true) >= thr)
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/* Index of the bucket holding the value of rank r (1-based) in h. */
static size_t
bucket_of_rank(const struct sl_hist *h, uint64_t r)
{
	uint64_t seen = 0;
	size_t i;

	for (i = 0; i < SL_HIST_NBUCKETS - 1; i++) {
		seen += h->counts[i];
		if (seen >= r)
			break;
	}
	return i;
}

/* Values of h that are surely above limit: in buckets starting above it. */
static uint64_t
count_above(const struct sl_hist *h, double limit)
{
	uint64_t n = 0;
	size_t i;

	for (i = SL_HIST_NBUCKETS; i-- > 0;) {
		if ((double)sl_hist_bucket_lo(i) <= limit)
			break;
		n += h->counts[i];
	}
	return n;
}

/*
 * The canary's limit at the quantile for a stable quantile of v µs:
 * max_latency_ratio times it, but never less than latency_tolerance above
 * it (a few µs on a fast service are not a regression).
 */
static double
quantile_limit(const struct sl_verdict_params *p, double v)
{
	double by_ratio = p->max_latency_ratio * v;

	return by_ratio > v + p->latency_tolerance ? by_ratio
	                                           : v + p->latency_tolerance;
}

/* Weight of the e-process restarted at segment k (a step, or a fresh
 * window within one), and the share of the nuisance budget of segment k:
 * 2^-(k+1), summing to 1 over all segments. */
static double
step_weight(uint32_t k)
{
	return ldexp(1.0, -(int)(k < 1000 ? k + 1 : 1000));
}

/* The canary error rate error_vs_stable tolerates at a stable rate. */
static double
tolerated_rate(const struct sl_verdict_params *p, double stable)
{
	double t = stable + p->error_margin;

	if (stable * p->error_ratio > t)
		t = stable * p->error_ratio;
	return t < 1 ? t : 1;
}

void
sl_verdict_params_default(struct sl_verdict_params *p)
{
	p->min_requests = 200;
	p->max_error_rate = 0.01;
	p->max_latency_ratio = 1.5;
	p->latency_quantile = 0.99;
	p->alpha = 0.01;
	p->error_margin = 0.001;
	p->error_ratio = 1.5;
	p->max_slower_prob = 0.55;
	p->latency_tolerance = SL_LATENCY_TOLERANCE_DEFAULT;
}

void
sl_verdict_params_from_conf(
    struct sl_verdict_params *p, const struct sl_rollout_conf *rc)
{
	sl_verdict_params_default(p);
	p->min_requests = rc->min_requests;
	p->max_error_rate = rc->max_error_rate;
	p->max_latency_ratio = rc->max_latency_ratio;
	p->latency_quantile = rc->latency_quantile;
	p->error_margin = rc->max_error_rate / 10;
	p->latency_tolerance = (double)rc->latency_tolerance_us;
	p->judge_4xx = rc->judge_4xx;
}

/* Is x in the interval (lo, hi), NaN excluded? */
static bool
open_range(double x, double lo, double hi)
{
	return x > lo && x < hi;
}

int
sl_verdict_params_check(
    const struct sl_verdict_params *p, char *err, size_t errlen)
{
	const char *why = NULL;

	if (p == NULL)
		why = "no parameters";
	else if (!open_range(p->max_error_rate, 0, 1))
		why = "max_error_rate must be in (0, 1)";
	else if (!(p->max_latency_ratio >= 1) || isinf(p->max_latency_ratio))
		why = "max_latency_ratio must be >= 1";
	else if (!open_range(p->latency_quantile, 0, 1))
		why = "latency_quantile must be in (0, 1)";
	else if (!open_range(p->alpha, 0, 1))
		why = "alpha must be in (0, 1)";
	else if (!(p->error_margin >= 0) || !(p->error_margin < 1))
		why = "error_margin must be in [0, 1)";
	else if (!(p->error_ratio >= 1) || isinf(p->error_ratio))
		why = "error_ratio must be >= 1";
	else if (!(p->max_slower_prob >= 0.5) || !(p->max_slower_prob < 1))
		why = "max_slower_prob must be in [0.5, 1)";
	else if (!(p->latency_tolerance >= 0) || isinf(p->latency_tolerance))
		why = "latency_tolerance must be >= 0";
	if (why == NULL)
		return 0;
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", why);
	return -1;
}

/* Put seq at the start of a step: no data, no evidence of its own yet. */
static void
seq_start_step(struct sl_verdict_seq *seq)
{
	size_t i;

	seq->looks = 0;
	for (i = 0; i < SL_NCHECKS; i++)
		seq->log_e[i] = 0;
	seq->pairs = 0;
	seq->pair_sum = 0;
	sl_hist_reset(&seq->prev_stable);
	sl_hist_reset(&seq->prev_canary);
}

void
sl_verdict_seq_copy(
    struct sl_verdict_seq *dst, const struct sl_verdict_seq *src)
{
	*dst = *src;
}

struct sl_verdict_seq *
sl_verdict_seq_new(void)
{
	struct sl_verdict_seq *seq;
	size_t i;

	if ((seq = calloc(1, sizeof *seq)) == NULL)
		return NULL;
	seq->step = 0;
	for (i = 0; i < SL_NCHECKS; i++)
		seq->log_carry[i] = log(step_weight(0));
	seq_start_step(seq);
	return seq;
}

void
sl_verdict_seq_free(struct sl_verdict_seq *seq)
{
	free(seq);
}

/* A fresh window begins: fold the evidence of the one that ended into
 * what later ones carry, and restart the e-processes. */
static void
seq_fold(struct sl_verdict_seq *seq)
{
	size_t i;

	seq->segment++;
	for (i = 0; i < SL_NCHECKS; i++)
		seq->log_carry[i] = log_add(seq->log_carry[i] + seq->log_e[i],
		    log(step_weight(seq->segment)));
	seq_start_step(seq);
}

void
sl_verdict_seq_next_step(struct sl_verdict_seq *seq)
{
	seq->step++;
	seq_fold(seq);
}

void
sl_verdict_seq_restart(struct sl_verdict_seq *seq)
{
	seq_fold(seq);
}

uint32_t
sl_verdict_seq_segment(const struct sl_verdict_seq *seq)
{
	return seq->segment;
}

void
sl_verdict_seq_resume(struct sl_verdict_seq *seq, uint32_t windows)
{
	do
		seq_fold(seq);
	while (seq->segment <= windows && seq->segment < 1000);
}

void
sl_verdict_seq_restore(struct sl_verdict_seq *seq, uint32_t windows)
{
	while (seq->segment < windows && seq->segment < 1000)
		seq_fold(seq);
}

void
sl_verdict_seq_fixed_stable(struct sl_verdict_seq *seq)
{
	seq->fixed_stable = true;
}

uint32_t
sl_verdict_seq_step(const struct sl_verdict_seq *seq)
{
	return seq->step;
}

const char *
sl_decision_name(enum sl_decision d)
{
	switch (d) {
	case SL_PASS:
		return "pass";
	case SL_FAIL:
		return "fail";
	case SL_INCONCLUSIVE:
		break;
	}
	return "inconclusive";
}

/* Does every bucket of cur hold at least as much as in prev? */
static bool
hist_grew(const struct sl_hist *cur, const struct sl_hist *prev)
{
	size_t i;

	for (i = 0; i < SL_HIST_NBUCKETS; i++)
		if (cur->counts[i] < prev->counts[i])
			return false;
	return true;
}

/*
 * Pairs formed in the interval since the previous look: min(canary,
 * stable) of its requests, each canary request compared with a stable one
 * at random. Adds to *pairs the number of pairs and to *sum their expected
 * score: pairs times the interval's Mann-Whitney estimate of P(canary
 * slower) + P(tie) / 2, on histogram buckets (values at their bucket's
 * midpoint). Two latencies no more than tol µs apart are a tie. The tie
 * relation is symmetric, so for a canary that is the stable version's
 * equal the expected score stays 1/2 whatever tol: the test keeps its
 * level, and only differences larger than tol are evidence. With a FIXED
 * stable sample (the guard's baseline, which does not grow), every canary
 * request of the interval is paired with a random value of the whole
 * sample.
 */
static void
interval_pairs(const struct sl_hist *cs, const struct sl_hist *cs_prev,
    const struct sl_hist *ss, const struct sl_hist *ss_prev, bool fixed,
    double tol, double *pairs, double *sum)
{
	/* Stable requests in buckets [0, lo) are faster than the canary
	 * bucket at hand by more than tol; those in [lo, hi) are ties. */
	double nc = 0, ns = 0, u = 0, below = 0, near = 0, c, m, mid;
	size_t i, lo = 0, hi = 0;

#define STABLE_AT(j)                                                           \
	((double)(fixed ? ss->counts[j] : ss->counts[j] - ss_prev->counts[j]))
	for (i = 0; i < SL_HIST_NBUCKETS; i++)
		ns += STABLE_AT(i);
	for (i = 0; i < SL_HIST_NBUCKETS && ns > 0; i++) {
		c = (double)(cs->counts[i] - cs_prev->counts[i]);
		if (c == 0)
			continue;
		mid = sl_hist_bucket_mid(i);
		for (; hi < SL_HIST_NBUCKETS &&
		     sl_hist_bucket_mid(hi) <= mid + tol;
		     hi++)
			near += STABLE_AT(hi);
		for (; sl_hist_bucket_mid(lo) < mid - tol; lo++) {
			near -= STABLE_AT(lo);
			below += STABLE_AT(lo);
		}
		u += c * (below + near / 2);
		nc += c;
	}
#undef STABLE_AT
	if (nc == 0 || ns == 0)
		return;
	m = fixed || nc < ns ? nc : ns;
	*pairs += m;
	*sum += m * u / (nc * ns);
}

/* Log of the level a check's total evidence must reach to FAIL. */
static double
fail_level(double a)
{
	return log(1 / a);
}

/*
 * Fill the test part of c from the current step's log e-value le and the
 * carried evidence; says FAIL when it reaches 1/alpha. Returns whether it
 * failed.
 */
static bool
settle(struct sl_check *c, double log_carry, double le, double alpha)
{
	double total = log_carry + le;

	c->alpha = alpha;
	c->evalue = total > log(EVALUE_MAX) ? EVALUE_MAX : exp(total);
	c->p_value = -total > 0 ? 1 : exp(-total);
	if (c->p_value < 1 / EVALUE_MAX)
		c->p_value = 1 / EVALUE_MAX;
	if (total >= fail_level(alpha)) {
		c->decision = SL_FAIL;
		return true;
	}
	return false;
}

/* Write a message for humans into buf; truncation is acceptable there. */
static void __attribute__((format(printf, 3, 4)))
say(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* Format a value of a check's unit for humans. */
static void
fmt_value(char *buf, size_t len, const char *unit, double v)
{
	if (strcmp(unit, "fraction") == 0)
		snprintf(buf, len, "%.3g%%", v * 100);
	else if (strcmp(unit, "us") == 0)
		snprintf(buf, len, "%.4gms", v / 1000);
	else
		snprintf(buf, len, "%.3f", v);
}

/*
 * Whether the check may PASS (given enough data): the rollout's evidence
 * against the canary, c->evalue, is below 1 (the data favour "canary
 * fine" over the mixture of alternatives), and the canary's measured value
 * is within its limit — for error rates, but for one error, which at small
 * counts is chance. The e-value alone let measurably bad canaries
 * through: far-off alternatives in the mixture pull it below 1, so 2.5%
 * errors on 200 requests passed a 1% limit. Otherwise the check is
 * INCONCLUSIVE — leaning bad, not proven — and the step is held until the
 * estimate comes back within the limit or the evidence proves it is not.
 * bench/SIMULATION.md has what it costs (longer holds at the limit).
 */
static bool
no_evidence(const struct sl_check *c)
{
	double slack = strcmp(c->unit, "fraction") == 0 && c->n > 0
	    ? 1.0 / (double)c->n
	    : 0;

	return c->evalue < 1 && c->canary - slack <= c->threshold;
}

/* A window's design effect as applied: at least 1. */
static double
deff(double d)
{
	return d > 1 ? d : 1;
}

/* error_rate: H0 canary rate <= max_error_rate. */
static void
judge_error_rate(const struct sl_verdict_params *p,
    const struct sl_verdict_seq *seq, const struct sl_verdict_window *st,
    const struct sl_verdict_window *ca, double alpha, struct sl_check *c,
    double *le)
{
	double rc =
	    ca->requests ? (double)ca->errors / (double)ca->requests : 0;
	double ds; /* the stable version's design effect */

	c->canary = rc;
	c->stable =
	    st->requests ? (double)st->errors / (double)st->requests : 0;
	c->threshold = p->max_error_rate;
	c->statistic = rc;
	c->null = p->max_error_rate;
	c->n = ca->requests;
	c->deff = deff(ca->deff_errors);
	ds = deff(st->deff_errors);
	*le = mix_log_e((double)ca->requests / c->deff,
	    (double)ca->errors / c->deff, p->max_error_rate, true);
	if (settle(c, seq->log_carry[SL_CHECK_ERROR_RATE], *le, alpha) &&
	    mix_log_e((double)st->requests / ds, (double)st->errors / ds,
	        p->max_error_rate, true) >= fail_level(alpha)) {
		/* The stable version is as surely above the limit: what
		 * both suffer (a shared dependency, bad requests) is not
		 * the canary's doing, and reverting it helps no user.
		 * error_vs_stable judges them against each other. Not
		 * failing at a crossing only lowers the chance of a revert:
		 * the budget holds. */
		c->decision = SL_INCONCLUSIVE;
		say(c->why, sizeof c->why,
		    "canary %.3g%% and stable %.3g%% both above %.3g%%: "
		    "shared, held",
		    rc * 100, c->stable * 100, p->max_error_rate * 100);
	} else if (c->decision == SL_FAIL)
		say(c->why, sizeof c->why,
		    "canary error rate %.3g%% is above the limit %.3g%%",
		    rc * 100, p->max_error_rate * 100);
	else if (ca->requests == 0 && ca->unanswered > 0)
		say(c->why, sizeof c->why,
		    "no canary responses: %llu requests unanswered (their "
		    "clients went away first)",
		    (unsigned long long)ca->unanswered);
	else if (ca->requests == 0)
		say(c->why, sizeof c->why, "no canary requests");
	else if (ca->requests < p->min_requests)
		say(c->why, sizeof c->why,
		    "%llu canary requests, fewer than %u",
		    (unsigned long long)ca->requests, p->min_requests);
	else if (!no_evidence(c))
		say(c->why, sizeof c->why,
		    "canary %.3g%% may exceed %.3g%%, not yet significant",
		    rc * 100, p->max_error_rate * 100);
	else {
		c->decision = SL_PASS;
		say(c->why, sizeof c->why, "canary %.3g%%, limit %.3g%%",
		    rc * 100, p->max_error_rate * 100);
	}
}

/* error_vs_stable: H0 canary rate <= tolerated_rate(stable rate), where
 * a request left unanswered counts as a failed one on either side. */
static void
judge_error_vs_stable(const struct sl_verdict_params *p,
    const struct sl_verdict_seq *seq, const struct sl_verdict_window *stw,
    const struct sl_verdict_window *caw, double alpha, double alpha_nuisance,
    struct sl_check *c, double *le)
{
	struct sl_verdict_window st = *stw, ca = *caw;
	double rc, rs, upper;

	st.requests += st.unanswered;
	st.errors += st.unanswered;
	ca.requests += ca.unanswered;
	ca.errors += ca.unanswered;
	if (p->judge_4xx) {
		st.errors += st.client_errors;
		ca.errors += ca.client_errors;
		if (st.errors > st.requests)
			st.errors = st.requests;
		if (ca.errors > ca.requests)
			ca.errors = ca.requests;
	}
	rc = ca.requests ? (double)ca.errors / (double)ca.requests : 0;
	rs = st.requests ? (double)st.errors / (double)st.requests : 0;

	c->canary = rc;
	c->stable = rs;
	c->threshold = tolerated_rate(p, rs);
	c->statistic = rc;
	c->n = ca.requests;
	if (st.requests == 0) {
		/* Nothing to compare with: no evidence either way. */
		c->null = 1;
		*le = 0;
		settle(c, seq->log_carry[SL_CHECK_ERROR_VS_STABLE], 0, alpha);
		c->decision = SL_INCONCLUSIVE;
		say(c->why, sizeof c->why, "no stable requests");
		return;
	}
	upper = rate_upper((double)st.requests / deff(st.deff_errors),
	    (double)st.errors / deff(st.deff_errors), alpha_nuisance);
	c->null = tolerated_rate(p, upper);
	c->deff = deff(ca.deff_errors);
	*le = mix_log_e((double)ca.requests / c->deff,
	    (double)ca.errors / c->deff, c->null, true);
	if (settle(c, seq->log_carry[SL_CHECK_ERROR_VS_STABLE], *le, alpha) &&
	    caw->unanswered > 0)
		say(c->why, sizeof c->why,
		    "canary %.3g%% vs stable %.3g%%: worse than %.3g%% (%llu "
		    "of %llu unanswered)",
		    rc * 100, rs * 100, c->null * 100,
		    (unsigned long long)caw->unanswered,
		    (unsigned long long)ca.requests);
	else if (c->decision == SL_FAIL)
		say(c->why, sizeof c->why,
		    "canary %.3g%% vs stable %.3g%% (at most %.3g%%): worse "
		    "than %.3g%%",
		    rc * 100, rs * 100, upper * 100, c->null * 100);
	else if (ca.requests == 0)
		say(c->why, sizeof c->why, "no canary requests");
	else if (ca.requests < p->min_requests || st.requests < p->min_requests)
		say(c->why, sizeof c->why,
		    "%llu canary, %llu stable requests: fewer than %u",
		    (unsigned long long)ca.requests,
		    (unsigned long long)st.requests, p->min_requests);
	else if (!no_evidence(c))
		say(c->why, sizeof c->why,
		    "canary %.3g%% vs stable %.3g%% may be worse, not yet "
		    "significant",
		    rc * 100, rs * 100);
	else {
		c->decision = SL_PASS;
		say(c->why, sizeof c->why,
		    "canary %.3g%% vs stable %.3g%%, tolerated %.3g%%",
		    rc * 100, rs * 100, c->threshold * 100);
	}
}

/*
 * latency_quantile: H0 canary's q-quantile <= ratio x stable's, tested as
 * "the share of canary requests above ratio x (an upper bound of the
 * stable's q-quantile) is <= 1 - q". With too few stable latencies to bound
 * its quantile the test cannot run (no evidence): the check then passes
 * on min_requests alone, and says so.
 */
static void
judge_latency_quantile(const struct sl_verdict_params *p,
    const struct sl_verdict_seq *seq, const struct sl_verdict_window *st,
    const struct sl_verdict_window *ca, double alpha, double alpha_nuisance,
    struct sl_check *c, double *le)
{
	double q = p->latency_quantile, limit = INFINITY, ds;
	uint64_t nc, ns, rank, above = 0;
	char a[32], b[32];

	*le = 0;
	c->null = 1 - q;
	if (st->latency == NULL || ca->latency == NULL) {
		settle(c, seq->log_carry[SL_CHECK_LATENCY_QUANTILE], 0, alpha);
		c->decision = SL_INCONCLUSIVE;
		say(c->why, sizeof c->why, "latency not measured");
		return;
	}
	nc = sl_hist_count(ca->latency);
	ns = sl_hist_count(st->latency);
	c->canary = sl_hist_quantile(ca->latency, q);
	c->stable = sl_hist_quantile(st->latency, q);
	c->threshold = quantile_limit(p, c->stable);
	c->n = nc;
	ds = deff(st->deff_latency);
	rank = stable_rank_upper(ns, ds, q, alpha_nuisance);
	c->deff = deff(ca->deff_latency);
	if (rank > 0 && nc > 0) {
		limit = quantile_limit(p,
		    (double)sl_hist_bucket_hi(
		        bucket_of_rank(st->latency, rank)));
		above = count_above(ca->latency, limit);
		c->statistic = (double)above / (double)nc;
		*le = mix_log_e(
		    (double)nc / c->deff, (double)above / c->deff, 1 - q, true);
	}
	fmt_value(a, sizeof a, "us", c->canary);
	fmt_value(b, sizeof b, "us", limit);
	if (settle(c, seq->log_carry[SL_CHECK_LATENCY_QUANTILE], *le, alpha))
		say(c->why, sizeof c->why,
		    "%.3g%% of canary requests above %s (allowed %.3g%%)",
		    c->statistic * 100, b, (1 - q) * 100);
	else if (nc == 0)
		say(c->why, sizeof c->why, "no canary latencies");
	else if (nc < p->min_requests || ns < p->min_requests)
		say(c->why, sizeof c->why,
		    "%llu canary, %llu stable latencies: fewer than %u",
		    (unsigned long long)nc, (unsigned long long)ns,
		    p->min_requests);
	else if (rank == 0 && ds > 1)
		say(c->why, sizeof c->why,
		    "%llu stable latencies, worth %.0f independent ones: too "
		    "few for its p%g (%llu)",
		    (unsigned long long)ns, (double)ns / ds, q * 100,
		    (unsigned long long)rank_needs(q, alpha_nuisance));
	else if (rank == 0)
		/* Nothing bounds the stable's quantile yet: the canary's
		 * tail cannot be tested, so it cannot pass either (it did:
		 * low-traffic steps promoted canaries with 10 s tails). */
		say(c->why, sizeof c->why,
		    "%llu stable latencies, too few to bound its p%g (%llu "
		    "needed)",
		    (unsigned long long)ns, q * 100,
		    (unsigned long long)rank_needs(q, alpha_nuisance));
	else if (!no_evidence(c))
		say(c->why, sizeof c->why,
		    "canary p%g %s may exceed %.3gx stable, not yet "
		    "significant",
		    q * 100, a, p->max_latency_ratio);
	else {
		c->decision = SL_PASS;
		say(c->why, sizeof c->why, "canary p%g %s, %.3g%% above %s",
		    q * 100, a, c->statistic * 100, b);
	}
}

/* latency_shift: H0 P(canary slower than stable) <= max_slower_prob. */
static void
judge_latency_shift(const struct sl_verdict_params *p,
    const struct sl_verdict_seq *seq, const struct sl_verdict_window *st,
    const struct sl_verdict_window *ca, double alpha, double alpha_nuisance,
    double pairs, double pair_sum, struct sl_check *c, double *le)
{
	char a[32], b[32], by[48] = "";
	double mc = 0, ms = 0, n0;

	if (p->latency_tolerance > 0) {
		fmt_value(a, sizeof a, "us", p->latency_tolerance);
		snprintf(by, sizeof by, " by more than %s", a);
	}
	c->stable = 0.5; /* a stable request against another one */
	c->threshold = p->max_slower_prob;
	c->null = p->max_slower_prob;
	/*
	 * A fixed stable sample (the guard's baseline) is paired with every
	 * canary request: the score estimates how the canary compares with
	 * that sample, not with the version it was drawn from. Given the
	 * sample, its expected value under "canary fine" is off by at most
	 * the distance between the sample's distribution and the true one,
	 * which the Dvoretzky-Kiefer-Wolfowitz inequality bounds by
	 * sqrt(ln(2/a)/2n) but for probability a (a nuisance share): with
	 * 50 baseline latencies, identical versions were switched back in
	 * up to 3.9% of guards, where this check's share is 0.25%.
	 */
	if (seq->fixed_stable && st->latency != NULL &&
	    (n0 = (double)sl_hist_count(st->latency)) > 0) {
		c->null = fmin(p->max_slower_prob +
		        sqrt(log(2 / alpha_nuisance) / (2 * n0)),
		    0.999);
	}
	c->n = (uint64_t)pairs;
	c->canary = pairs > 0 ? pair_sum / pairs : 0.5;
	c->statistic = c->canary;
	/* A pair's score leans on both sides' users. */
	c->deff = fmax(deff(ca->deff_latency), deff(st->deff_latency));
	*le = mix_log_e(pairs / c->deff, pair_sum / c->deff, c->null, true);
	if (st->latency != NULL && ca->latency != NULL) {
		mc = sl_hist_quantile(ca->latency, 0.5);
		ms = sl_hist_quantile(st->latency, 0.5);
	}
	fmt_value(a, sizeof a, "us", mc);
	fmt_value(b, sizeof b, "us", ms);
	if (settle(c, seq->log_carry[SL_CHECK_LATENCY_SHIFT], *le, alpha))
		say(c->why, sizeof c->why,
		    "canary slower%s in %.1f%% of pairs (median %s vs %s)", by,
		    c->canary * 100, a, b);
	else if (st->latency == NULL || ca->latency == NULL)
		say(c->why, sizeof c->why, "latency not measured");
	else if (pairs == 0)
		say(c->why, sizeof c->why, "no canary/stable pairs yet");
	else if (pairs < p->min_requests)
		say(c->why, sizeof c->why, "%.0f pairs, fewer than %u", pairs,
		    p->min_requests);
	else if (!no_evidence(c))
		say(c->why, sizeof c->why,
		    "canary slower%s in %.1f%% of pairs, not yet significant",
		    by, c->canary * 100);
	else {
		c->decision = SL_PASS;
		say(c->why, sizeof c->why,
		    "canary slower%s in %.1f%% of pairs (median %s vs %s)", by,
		    c->canary * 100, a, b);
	}
}

/* Say why out could not be judged; seq stays as it was. */
static int
judge_refuse(struct sl_judgement *out, const char *why)
{
	out->decision = SL_INCONCLUSIVE;
	say(out->summary, sizeof out->summary, "not judged: %s", why);
	return -1;
}

void
sl_verdict_window_of(struct sl_verdict_window *w, struct sl_hist *latency,
    const struct sl_vstats *v)
{
	uint64_t errors =
	    sl_stat_since(sl_vstats_errors(v), v->unjudged_errors);

	w->requests =
	    sl_stat_since(sl_vstats_responses(v), v->unjudged_responses);
	/* A response counts when its head arrives and a cut one again when
	 * it is cut, so a window can hold the cut of a response whose head
	 * came before it: errors are at most responses. */
	w->errors = errors < w->requests ? errors : w->requests;
	w->unanswered = sl_stat_since(v->unanswered, v->unjudged_unanswered);
	w->client_errors = sl_stat_since(v->resp_4xx, v->unjudged_4xx);
	w->unjudged = v->unjudged_responses + v->unjudged_unanswered;
	/* Every unjudged latency is in latency too (recorded there first,
	 * read there last: sl_vstats_merge); if a read says otherwise, all
	 * are kept. */
	if (sl_hist_sub(latency, &v->latency, &v->latency_unjudged) != 0)
		*latency = v->latency;
	w->latency = latency;
}

int
sl_verdict_judge(const struct sl_verdict_params *p, struct sl_verdict_seq *seq,
    const struct sl_verdict_window *stable,
    const struct sl_verdict_window *canary, struct sl_judgement *out)
{
	double a_check, a_test, a_nuis, le[SL_NCHECKS] = {0};
	double pairs, pair_sum;
	bool lat, any_fail = false, all_pass = true;
	char err[64];
	size_t i, first_fail = SL_NCHECKS, first_open = SL_NCHECKS;

	if (out == NULL)
		return -1;
	memset(out, 0, sizeof *out);
	out->nchecks = SL_NCHECKS;
	for (i = 0; i < SL_NCHECKS; i++) {
		out->checks[i].name = check_names[i];
		out->checks[i].unit = check_units[i];
		out->checks[i].decision = SL_INCONCLUSIVE;
		out->checks[i].evalue = 1;
		out->checks[i].p_value = 1;
		out->checks[i].deff = 1;
	}
	if (sl_verdict_params_check(p, err, sizeof err) != 0)
		return judge_refuse(out, err);
	if (seq == NULL || stable == NULL || canary == NULL)
		return judge_refuse(out, "missing argument");
	if (stable->errors > stable->requests ||
	    canary->errors > canary->requests)
		return judge_refuse(out, "more errors than requests");
	out->step = seq->step;
	out->look = seq->looks + 1;
	out->unjudged_stable = stable->unjudged;
	out->unjudged_canary = canary->unjudged;
	lat = stable->latency != NULL && canary->latency != NULL;
	if (lat &&
	    (!hist_grew(stable->latency, &seq->prev_stable) ||
	        !hist_grew(canary->latency, &seq->prev_canary)))
		return judge_refuse(out, "latency window shrank within a step");

	/* Bonferroni over the checks; the nuisance bounds take a share of
	 * theirs, split over steps so that all steps together stay in it. */
	a_check = p->alpha / SL_NCHECKS;
	a_test = a_check * (1 - NUISANCE_SHARE);
	a_nuis = a_check * NUISANCE_SHARE * step_weight(seq->segment);

	pairs = seq->pairs;
	pair_sum = seq->pair_sum;
	if (lat)
		interval_pairs(canary->latency, &seq->prev_canary,
		    stable->latency, &seq->prev_stable, seq->fixed_stable,
		    p->latency_tolerance, &pairs, &pair_sum);

	judge_error_rate(p, seq, stable, canary, a_check,
	    &out->checks[SL_CHECK_ERROR_RATE], &le[SL_CHECK_ERROR_RATE]);
	judge_error_vs_stable(p, seq, stable, canary, a_test, a_nuis,
	    &out->checks[SL_CHECK_ERROR_VS_STABLE],
	    &le[SL_CHECK_ERROR_VS_STABLE]);
	judge_latency_quantile(p, seq, stable, canary, a_test, a_nuis,
	    &out->checks[SL_CHECK_LATENCY_QUANTILE],
	    &le[SL_CHECK_LATENCY_QUANTILE]);
	/* With a fixed stable sample the check bounds that sample's error
	 * too, from a nuisance share; otherwise it has the whole share. */
	judge_latency_shift(p, seq, stable, canary,
	    seq->fixed_stable ? a_test : a_check, a_nuis, pairs, pair_sum,
	    &out->checks[SL_CHECK_LATENCY_SHIFT], &le[SL_CHECK_LATENCY_SHIFT]);

	/* Commit this look to the sequential state. */
	seq->looks++;
	for (i = 0; i < SL_NCHECKS; i++)
		seq->log_e[i] = le[i];
	seq->pairs = pairs;
	seq->pair_sum = pair_sum;
	if (lat) {
		memcpy(&seq->prev_stable, stable->latency,
		    sizeof seq->prev_stable);
		memcpy(&seq->prev_canary, canary->latency,
		    sizeof seq->prev_canary);
	}

	for (i = 0; i < SL_NCHECKS; i++) {
		if (out->checks[i].decision == SL_FAIL) {
			any_fail = true;
			if (first_fail == SL_NCHECKS)
				first_fail = i;
		}
		if (out->checks[i].decision != SL_PASS) {
			all_pass = false;
			if (first_open == SL_NCHECKS &&
			    out->checks[i].decision == SL_INCONCLUSIVE)
				first_open = i;
		}
	}
	if (any_fail) {
		const struct sl_check *c = &out->checks[first_fail];

		out->decision = SL_FAIL;
		say(out->summary, sizeof out->summary,
		    "fail: %s: %s (p=%.2g <= %.2g)", c->name, c->why,
		    c->p_value, c->alpha);
	} else if (all_pass) {
		out->decision = SL_PASS;
		say(out->summary, sizeof out->summary,
		    "pass: %zu checks (canary %llu, stable %llu requests)",
		    (size_t)SL_NCHECKS, (unsigned long long)canary->requests,
		    (unsigned long long)stable->requests);
	} else {
		const struct sl_check *c = &out->checks[first_open];

		out->decision = SL_INCONCLUSIVE;
		say(out->summary, sizeof out->summary, "inconclusive: %s: %s",
		    c->name, c->why);
	}
	return 0;
}

int
sl_verdict_format(const struct sl_judgement *j, char *buf, size_t len)
{
	size_t off = 0, i;
	int n;

	if (buf == NULL || len == 0)
		return -1;
	buf[0] = '\0';
	n = snprintf(buf, len, "step %u look %u: %s\n", j->step + 1, j->look,
	    j->summary);
	if (n < 0 || (size_t)n >= len)
		return -1;
	off = (size_t)n;
	for (i = 0; i < j->nchecks && i < SL_NCHECKS; i++) {
		const struct sl_check *c = &j->checks[i];
		char cv[32], sv[32], tv[32];

		fmt_value(cv, sizeof cv, c->unit, c->canary);
		fmt_value(sv, sizeof sv, c->unit, c->stable);
		fmt_value(tv, sizeof tv, c->unit, c->threshold);
		n = snprintf(buf + off, len - off,
		    "  %-16s %-12s canary %s stable %s limit %s | "
		    "observed %.4g vs null %.4g over %llu, e=%.3g p=%.3g "
		    "alpha=%.3g | %s\n",
		    c->name, sl_decision_name(c->decision), cv, sv, tv,
		    c->statistic, c->null, (unsigned long long)c->n, c->evalue,
		    c->p_value, c->alpha, c->why);
		if (n < 0 || (size_t)n >= len - off)
			return -1;
		off += (size_t)n;
	}
	return 0;
}
