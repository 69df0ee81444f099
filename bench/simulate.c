/*
 * simulate.c — sl-simulate: measures the analyzer's false-revert rate and
 * its time to revert over many synthetic rollouts, and compares it with two
 * reference rules judged on the very same kind of data.
 *
 * A rollout walks the canary through the configured steps (default
 * 1 5 25 50 %, then promotion at 100 %, which has no stable traffic left to
 * compare with). Traffic is simulated second by second: per version,
 * requests ~ Poisson(rate), each request an error with the version's
 * probability and a latency drawn from a lognormal (median, sigma),
 * recorded into real struct sl_hist histograms. The canary receives a fixed
 * rate for the whole scenario (`--canary-rps` or the scenario's); the
 * stable version receives what the step's weights imply:
 * canary_rps * (100 - w) / w at canary weight w %.
 *
 * Three deciders watch a rollout, each in its own copy of the world
 * (same seed, so the same data until their actions differ):
 *
 *   sluice   sl_verdict_judge() every interval on the window since the
 *            step began; FAIL reverts; a step ends after step_time when the
 *            verdict is PASS, otherwise it is held (judged on) up to
 *            --max-hold x step_time, then the rollout stalls for an
 *            operator (counted, not a revert).
 *   flagger  every interval, on that interval's data: canary error rate >
 *            max_error_rate, or canary p99 > max_latency_ratio x stable
 *            p99, is a failed check; failed checks are counted over the
 *            whole rollout (Flagger's status.failedChecks is never reset
 *            during an analysis) and --flagger-limit (5) of them revert; a
 *            failed interval does not advance the step (as in Flagger).
 *   kayenta  every interval one point per version and metric (that
 *            interval's error rate and p99); from the third interval of a
 *            step on, a two-sided exact Mann-Whitney U test of the step's
 *            canary points against its stable points per metric; p < 0.05
 *            with the canary higher is a failure and reverts.
 *
 * Regressions are present from the rollout's first second, so the time to
 * revert is measured from the start of the rollout. Rollouts never
 * reverted count as infinitely slow in the time quantiles ("-" when the
 * quantile is not reached). Deterministic for a given --seed, whatever
 * --threads.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analysis/histogram.h"
#include "analysis/verdict.h"

#define MAX_STEPS   16
#define KAYENTA_MAX 32 /* points per version per step */
#define NEVER       UINT32_MAX
#define Z99         2.3263478740408408 /* standard normal 0.99 quantile */

enum method { M_SLUICE, M_FLAGGER, M_KAYENTA, NMETHODS };
static const char *const method_names[NMETHODS] = {
    "sluice", "flagger-style", "kayenta-style"};

/* What one version serves: error probability and lognormal latency. */
struct version_model {
	double err;
	double median_ms;
	double sigma;
};

struct scenario {
	const char *name;  /* for --scenario */
	const char *title; /* table row */
	double canary_rps;
	bool regression; /* a bad canary: time to revert matters */
	double err_stable, err_canary;
	/*
	 * How the canary's latency differs (0 = not at all): p99_factor
	 * multiplies its p99 with the median unchanged (a heavier lognormal
	 * tail: sigma + ln(factor) / z(0.99)); median_factor multiplies every
	 * latency; slower_prob sets median_factor so that a canary request is
	 * slower than a stable one with that probability.
	 */
	double p99_factor, median_factor, slower_prob;
	/* The scenario's own stable latency (0: --median-ms, --sigma). */
	double median_ms, sigma;
	/* Filled from the options: */
	struct version_model stable, canary;
};

struct opts {
	unsigned rollouts;
	uint64_t seed;
	unsigned threads;
	uint32_t steps[MAX_STEPS]; /* canary weight %, judged steps only */
	size_t nsteps;
	uint32_t step_time; /* s */
	uint32_t interval;  /* s */
	double max_hold;    /* sluice holds a step up to this x step_time */
	double median_ms, sigma; /* stable latency */
	double canary_rps;       /* > 0: overrides the scenarios' */
	unsigned flagger_limit;
	double kayenta_alpha;
	const char *only; /* one scenario, or NULL */
	struct sl_verdict_params vp;
};

/* Walker/Vose alias table over histogram buckets. */
struct alias {
	size_t n;
	uint64_t *value; /* a µs value inside the bucket */
	uint32_t *prob;  /* acceptance threshold, 32-bit fixed point */
	uint32_t *other; /* alias index */
};

/* xoshiro256**. */
struct rng {
	uint64_t s[4];
};

/* One decider's copy of the simulated service during one rollout. */
struct world {
	struct rng rng;
	const struct opts *o;
	const struct scenario *sc;
	const struct alias *lat[2]; /* 0 stable, 1 canary */
	size_t step;                /* index into o->steps */
	uint32_t t_step, t;         /* seconds into the step, the rollout */
	uint64_t req[2], err[2];    /* since the step began */
	uint64_t ireq[2], ierr[2];  /* this interval */
	struct sl_hist cum[2];      /* since the step began */
	struct sl_hist ivl[2];      /* this interval */
};

struct outcome {
	uint32_t t_revert; /* NEVER when not reverted */
	bool stalled;      /* sluice: held too long, left to an operator */
	bool held;         /* sluice: held at least one step */
	int check;         /* sluice: first failing check, or -1 */
};

struct job {
	const struct opts *o;
	const struct scenario *sc;
	const struct alias *lat[2];
	struct outcome *out[NMETHODS]; /* [rollouts] each */
	unsigned thread;
};

/* splitmix64, to seed and to derive seeds. */
static uint64_t
splitmix(uint64_t *x)
{
	uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void
rng_seed(struct rng *r, uint64_t seed)
{
	int i;

	for (i = 0; i < 4; i++)
		r->s[i] = splitmix(&seed);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t
rng_next(struct rng *r)
{
	uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

/* Uniform in (0, 1). */
static inline double
rng_unit(struct rng *r)
{
	return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

/* Poisson(lambda): multiplication for small lambda, PTRS (Hörmann 1993)
 * otherwise; both exact. */
static uint64_t
rng_poisson(struct rng *r, double lambda)
{
	double slam, loglam, b, a, invalpha, vr, u, v, us, k;

	if (lambda <= 0)
		return 0;
	if (lambda < 10) {
		double l = exp(-lambda), p = 1;
		uint64_t n = 0;

		for (;;) {
			p *= rng_unit(r);
			if (p <= l)
				return n;
			n++;
		}
	}
	slam = sqrt(lambda);
	loglam = log(lambda);
	b = 0.931 + 2.53 * slam;
	a = -0.059 + 0.02483 * b;
	invalpha = 1.1239 + 1.1328 / (b - 3.4);
	vr = 0.9277 - 3.6224 / (b - 2);
	for (;;) {
		u = rng_unit(r) - 0.5;
		v = rng_unit(r);
		us = 0.5 - fabs(u);
		k = floor((2 * a / us + b) * u + lambda + 0.43);
		if (us >= 0.07 && v <= vr)
			return (uint64_t)k;
		if (k < 0 || (us < 0.013 && v > us))
			continue;
		if (log(v) + log(invalpha) - log(a / (us * us) + b) <=
		    -lambda + k * loglam - lgamma(k + 1))
			return (uint64_t)k;
	}
}

/* Standard normal CDF. */
static double
phi(double z)
{
	return 0.5 * erfc(-z / M_SQRT2);
}

/* Inverse of phi, by bisection (setup only). */
static double
phi_inv(double p)
{
	double lo = -10, hi = 10;
	int i;

	for (i = 0; i < 100; i++) {
		double mid = (lo + hi) / 2;

		if (phi(mid) < p)
			lo = mid;
		else
			hi = mid;
	}
	return (lo + hi) / 2;
}

/*
 * Alias table of the lognormal (median_ms, sigma) rounded to whole µs and
 * bucketed as struct sl_hist does: sampling an index and recording its
 * value is the same as recording a continuous sample. Aborts on OOM.
 */
static void
alias_build(struct alias *t, double median_ms, double sigma)
{
	double mu = log(median_ms * 1000), *p, *scaled, total = 0;
	size_t i, n = 0, *small, *large, ns = 0, nl = 0;
	size_t *idx;

	p = calloc(SL_HIST_NBUCKETS, sizeof *p);
	idx = calloc(SL_HIST_NBUCKETS, sizeof *idx);
	if (p == NULL || idx == NULL)
		abort();
	for (i = 0; i < SL_HIST_NBUCKETS; i++) {
		double lo = (double)sl_hist_bucket_lo(i) - 0.5;
		double hi = (double)sl_hist_bucket_hi(i) + 0.5;
		double clo = lo > 0 ? phi((log(lo) - mu) / sigma) : 0;
		double chi =
		    i == SL_HIST_NBUCKETS - 1 ? 1 : phi((log(hi) - mu) / sigma);

		if (chi - clo > 1e-13) {
			p[n] = chi - clo;
			idx[n++] = i;
			total += chi - clo;
		}
	}
	t->n = n;
	t->value = calloc(n, sizeof *t->value);
	t->prob = calloc(n, sizeof *t->prob);
	t->other = calloc(n, sizeof *t->other);
	scaled = calloc(n, sizeof *scaled);
	small = calloc(n, sizeof *small);
	large = calloc(n, sizeof *large);
	if (!t->value || !t->prob || !t->other || !scaled || !small || !large)
		abort();
	for (i = 0; i < n; i++) {
		t->value[i] = sl_hist_bucket_lo(idx[i]);
		scaled[i] = p[i] / total * (double)n;
		if (scaled[i] < 1)
			small[ns++] = i;
		else
			large[nl++] = i;
	}
	while (ns > 0 && nl > 0) {
		size_t s = small[--ns], l = large[nl - 1];

		t->prob[s] = (uint32_t)(scaled[s] * 4294967295.0);
		t->other[s] = (uint32_t)l;
		scaled[l] -= 1 - scaled[s];
		if (scaled[l] < 1) {
			nl--;
			small[ns++] = l;
		}
	}
	while (nl > 0) {
		t->prob[large[--nl]] = UINT32_MAX;
	}
	while (ns > 0) {
		t->prob[small[--ns]] = UINT32_MAX;
	}
	free(p);
	free(idx);
	free(scaled);
	free(small);
	free(large);
}

static void
alias_free(struct alias *t)
{
	free(t->value);
	free(t->prob);
	free(t->other);
}

/* One latency from t, in µs. */
static inline uint64_t
alias_draw(const struct alias *t, struct rng *r)
{
	uint64_t u = rng_next(r);
	size_t i = (size_t)(((u >> 32) * (uint64_t)t->n) >> 32);

	return (uint32_t)u <= t->prob[i] ? t->value[i] : t->value[t->other[i]];
}

/* Canary weight of the current step, %. */
static double
world_weight(const struct world *w)
{
	return (double)w->o->steps[w->step];
}

/* Start a rollout: step 0, nothing recorded. */
static void
world_reset(struct world *w, uint64_t seed)
{
	int v;

	rng_seed(&w->rng, seed);
	w->step = 0;
	w->t_step = 0;
	w->t = 0;
	for (v = 0; v < 2; v++) {
		w->req[v] = w->err[v] = w->ireq[v] = w->ierr[v] = 0;
		sl_hist_reset(&w->cum[v]);
		sl_hist_reset(&w->ivl[v]);
	}
}

/* The next step begins: windows start again from zero. */
static void
world_next_step(struct world *w)
{
	int v;

	w->step++;
	w->t_step = 0;
	for (v = 0; v < 2; v++) {
		w->req[v] = w->err[v] = 0;
		sl_hist_reset(&w->cum[v]);
	}
}

/* Simulate one interval of traffic and fold it into the step's window. */
static void
world_interval(struct world *w)
{
	const struct version_model *m[2] = {&w->sc->stable, &w->sc->canary};
	double wt = world_weight(w),
	       rc = w->o->canary_rps > 0 ? w->o->canary_rps : w->sc->canary_rps;
	double rate[2] = {rc * (100 - wt) / wt, rc};
	uint32_t sec;
	int v;

	for (v = 0; v < 2; v++) {
		w->ireq[v] = w->ierr[v] = 0;
		sl_hist_reset(&w->ivl[v]);
	}
	for (sec = 0; sec < w->o->interval; sec++) {
		for (v = 0; v < 2; v++) {
			uint64_t n = rng_poisson(&w->rng, rate[v]), i;
			uint64_t thr =
			    (uint64_t)(m[v]->err * 18446744073709551615.0);

			for (i = 0; i < n; i++) {
				if (m[v]->err > 0 && rng_next(&w->rng) < thr)
					w->ierr[v]++;
				sl_hist_record(
				    &w->ivl[v], alias_draw(w->lat[v], &w->rng));
			}
			w->ireq[v] += n;
		}
	}
	for (v = 0; v < 2; v++) {
		w->req[v] += w->ireq[v];
		w->err[v] += w->ierr[v];
		sl_hist_merge(&w->cum[v], &w->ivl[v]);
	}
	w->t_step += w->o->interval;
	w->t += w->o->interval;
}

/* Has the step run its minimum time? */
static bool
step_done(const struct world *w)
{
	return w->t_step >= w->o->step_time;
}

/* sluice: sl_verdict_judge() with the state machine described above. */
static struct outcome
run_sluice(struct world *w, struct sl_verdict_seq **seqp, uint64_t seed)
{
	struct outcome res = {.t_revert = NEVER, .check = -1};
	struct sl_judgement j;
	const struct opts *o = w->o;
	size_t i;

	sl_verdict_seq_free(*seqp);
	if ((*seqp = sl_verdict_seq_new()) == NULL)
		abort();
	world_reset(w, seed);
	for (;;) {
		struct sl_verdict_window s, c;

		world_interval(w);
		s = (struct sl_verdict_window){.requests = w->req[0],
		    .errors = w->err[0],
		    .latency = &w->cum[0]};
		c = (struct sl_verdict_window){.requests = w->req[1],
		    .errors = w->err[1],
		    .latency = &w->cum[1]};
		if (sl_verdict_judge(&o->vp, *seqp, &s, &c, &j) != 0) {
			fprintf(stderr, "sl-simulate: %s\n", j.summary);
			exit(2);
		}
		if (j.decision == SL_FAIL) {
			res.t_revert = w->t;
			for (i = 0; i < SL_NCHECKS; i++)
				if (j.checks[i].decision == SL_FAIL) {
					res.check = (int)i;
					break;
				}
			return res;
		}
		if (!step_done(w))
			continue;
		if (j.decision == SL_PASS) {
			if (w->step + 1 == o->nsteps)
				return res; /* promoted */
			world_next_step(w);
			sl_verdict_seq_next_step(*seqp);
			continue;
		}
		res.held = true;
		if (w->t_step >= (uint32_t)(o->max_hold * o->step_time)) {
			res.stalled = true;
			return res;
		}
	}
}

/* flagger-style: a threshold check per interval, failures counted. */
static struct outcome
run_flagger(struct world *w, uint64_t seed)
{
	struct outcome res = {.t_revert = NEVER, .check = -1};
	const struct opts *o = w->o;
	unsigned failed = 0;

	world_reset(w, seed);
	for (;;) {
		bool fail = false;

		world_interval(w);
		if (w->ireq[1] > 0 &&
		    (double)w->ierr[1] / (double)w->ireq[1] >
		        o->vp.max_error_rate)
			fail = true;
		if (sl_hist_count(&w->ivl[1]) > 0 &&
		    sl_hist_count(&w->ivl[0]) > 0 &&
		    sl_hist_quantile(&w->ivl[1], o->vp.latency_quantile) >
		        o->vp.max_latency_ratio *
		            sl_hist_quantile(
		                &w->ivl[0], o->vp.latency_quantile))
			fail = true;
		if (fail && ++failed >= o->flagger_limit) {
			res.t_revert = w->t;
			return res;
		}
		if (!fail && step_done(w)) {
			if (w->step + 1 == o->nsteps)
				return res;
			world_next_step(w);
		}
	}
}

/*
 * Two-sided exact Mann-Whitney U test of x (canary) against y (stable),
 * conditional on ties (mid-ranks). Returns the p-value; *higher says
 * whether x's rank sum is above its mean.
 */
static double
mann_whitney(
    const double *x, size_t nx, const double *y, size_t ny, bool *higher)
{
	static __thread double dp[KAYENTA_MAX + 1]
	                         [2 * KAYENTA_MAX * (2 * KAYENTA_MAX + 1) + 1];
	double all[2 * KAYENTA_MAX];
	unsigned rank2[2 * KAYENTA_MAX]; /* doubled mid-ranks */
	size_t n = nx + ny, i, k, maxsum, obs = 0;
	double mean, dev, total = 0, extreme = 0;

	for (i = 0; i < nx; i++)
		all[i] = x[i];
	for (i = 0; i < ny; i++)
		all[nx + i] = y[i];
	for (i = 0; i < n; i++) {
		size_t less = 0, equal = 0;

		for (k = 0; k < n; k++) {
			less += all[k] < all[i];
			equal += all[k] == all[i];
		}
		/* mid-rank = less + (equal + 1) / 2, doubled. */
		rank2[i] = (unsigned)(2 * less + equal + 1);
	}
	for (i = 0; i < nx; i++)
		obs += rank2[i];
	maxsum = 0;
	for (i = 0; i < n; i++)
		maxsum += rank2[i];
	for (k = 0; k <= nx; k++)
		memset(dp[k], 0, (maxsum + 1) * sizeof dp[k][0]);
	dp[0][0] = 1;
	for (i = 0; i < n; i++)
		for (k = (i + 1 < nx ? i + 1 : nx); k >= 1; k--) {
			size_t s;

			for (s = maxsum; s >= rank2[i]; s--)
				dp[k][s] += dp[k - 1][s - rank2[i]];
		}
	mean = (double)nx * (double)(n + 1);
	dev = fabs((double)obs - mean);
	for (k = 0; k <= maxsum; k++) {
		total += dp[nx][k];
		if (fabs((double)k - mean) >= dev - 1e-9)
			extreme += dp[nx][k];
	}
	*higher = (double)obs > mean;
	return extreme / total;
}

/* kayenta-style: per-interval points, Mann-Whitney from 3 points on. */
static struct outcome
run_kayenta(struct world *w, uint64_t seed)
{
	struct outcome res = {.t_revert = NEVER, .check = -1};
	const struct opts *o = w->o;
	double er[2][KAYENTA_MAX], lq[2][KAYENTA_MAX];
	size_t ner[2] = {0, 0}, nlq[2] = {0, 0};
	int v;

	world_reset(w, seed);
	for (;;) {
		bool fail = false, higher;
		double p;

		world_interval(w);
		for (v = 0; v < 2; v++) {
			if (w->ireq[v] > 0 && ner[v] < KAYENTA_MAX)
				er[v][ner[v]++] =
				    (double)w->ierr[v] / (double)w->ireq[v];
			if (sl_hist_count(&w->ivl[v]) > 0 &&
			    nlq[v] < KAYENTA_MAX)
				lq[v][nlq[v]++] = sl_hist_quantile(
				    &w->ivl[v], o->vp.latency_quantile);
		}
		if (ner[0] >= 3 && ner[1] >= 3) {
			p = mann_whitney(er[1], ner[1], er[0], ner[0], &higher);
			fail |= p < o->kayenta_alpha && higher;
		}
		if (nlq[0] >= 3 && nlq[1] >= 3) {
			p = mann_whitney(lq[1], nlq[1], lq[0], nlq[0], &higher);
			fail |= p < o->kayenta_alpha && higher;
		}
		if (fail) {
			res.t_revert = w->t;
			return res;
		}
		if (step_done(w)) {
			if (w->step + 1 == o->nsteps)
				return res;
			world_next_step(w);
			ner[0] = ner[1] = nlq[0] = nlq[1] = 0;
		}
	}
}

/* Seed of rollout r of scenario sc: the same for every decider. */
static uint64_t
rollout_seed(const struct opts *o, const struct scenario *sc, unsigned r)
{
	uint64_t x = o->seed, h = 1469598103934665603u;
	const char *p;

	for (p = sc->name; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211u;
	x ^= h;
	x += (uint64_t)r * UINT64_C(0x632be59bd9b4e019);
	return splitmix(&x);
}

static void *
job_run(void *arg)
{
	struct job *jb = arg;
	struct world *w = calloc(1, sizeof *w);
	struct sl_verdict_seq *seq = NULL;
	unsigned r;

	if (w == NULL)
		abort();
	w->o = jb->o;
	w->sc = jb->sc;
	w->lat[0] = jb->lat[0];
	w->lat[1] = jb->lat[1];
	for (r = jb->thread; r < jb->o->rollouts; r += jb->o->threads) {
		uint64_t seed = rollout_seed(jb->o, jb->sc, r);

		jb->out[M_SLUICE][r] = run_sluice(w, &seq, seed);
		jb->out[M_FLAGGER][r] = run_flagger(w, seed);
		jb->out[M_KAYENTA][r] = run_kayenta(w, seed);
	}
	sl_verdict_seq_free(seq);
	free(w);
	return NULL;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The q-quantile of the times (nearest rank), as text. */
static void
fmt_quantile(
    char *buf, size_t len, const uint32_t *sorted, unsigned n, double q)
{
	unsigned rank = (unsigned)ceil(q * n);

	if (rank < 1)
		rank = 1;
	if (sorted[rank - 1] == NEVER)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%u s", sorted[rank - 1]);
}

/* Run one scenario with every decider and print its table rows. */
static void
run_scenario(const struct opts *o, const struct scenario *sc)
{
	struct outcome *out[NMETHODS];
	struct alias lat[2];
	pthread_t *th;
	struct job *jobs;
	uint32_t *times;
	unsigned t, r, m;
	char rps[32];

	alias_build(&lat[0], sc->stable.median_ms, sc->stable.sigma);
	alias_build(&lat[1], sc->canary.median_ms, sc->canary.sigma);
	for (m = 0; m < NMETHODS; m++)
		if ((out[m] = calloc(o->rollouts, sizeof *out[m])) == NULL)
			abort();
	th = calloc(o->threads, sizeof *th);
	jobs = calloc(o->threads, sizeof *jobs);
	times = calloc(o->rollouts, sizeof *times);
	if (th == NULL || jobs == NULL || times == NULL)
		abort();
	for (t = 0; t < o->threads; t++) {
		jobs[t].o = o;
		jobs[t].sc = sc;
		jobs[t].lat[0] = &lat[0];
		jobs[t].lat[1] = &lat[1];
		for (m = 0; m < NMETHODS; m++)
			jobs[t].out[m] = out[m];
		jobs[t].thread = t;
		if (pthread_create(&th[t], NULL, job_run, &jobs[t]) != 0) {
			fprintf(stderr, "sl-simulate: pthread_create failed\n");
			exit(1);
		}
	}
	for (t = 0; t < o->threads; t++)
		pthread_join(th[t], NULL);

	snprintf(rps, sizeof rps, "%g",
	    o->canary_rps > 0 ? o->canary_rps : sc->canary_rps);
	for (m = 0; m < NMETHODS; m++) {
		unsigned reverted = 0, stalled = 0, held = 0;
		unsigned by_check[SL_NCHECKS] = {0};
		char med[16], p95[16], notes[160] = "";
		size_t off = 0;

		for (r = 0; r < o->rollouts; r++) {
			const struct outcome *x = &out[m][r];

			times[r] = x->t_revert;
			reverted += x->t_revert != NEVER;
			stalled += x->stalled;
			held += x->held;
			if (x->check >= 0)
				by_check[x->check]++;
		}
		qsort(times, o->rollouts, sizeof *times, cmp_u32);
		fmt_quantile(med, sizeof med, times, o->rollouts, 0.5);
		fmt_quantile(p95, sizeof p95, times, o->rollouts, 0.95);
		if (m == M_SLUICE) {
			static const char *const short_names[SL_NCHECKS] = {
			    "abs", "rel", "quant", "shift"};
			size_t i;

			off += (size_t)snprintf(notes + off, sizeof notes - off,
			    "held %.1f%%, stalled %.1f%%",
			    100.0 * held / o->rollouts,
			    100.0 * stalled / o->rollouts);
			for (i = 0; i < SL_NCHECKS && reverted > 0; i++)
				if (by_check[i] > 0)
					off += (size_t)snprintf(notes + off,
					    sizeof notes - off, "; %s %.0f%%",
					    short_names[i],
					    100.0 * by_check[i] / reverted);
		}
		printf("| %s | %s | %s | %.1f%% | %s | %s | %s |\n",
		    m == 0 ? sc->title : "", m == 0 ? rps : "", method_names[m],
		    100.0 * reverted / o->rollouts, sc->regression ? med : "",
		    sc->regression ? p95 : "", notes);
	}
	fflush(stdout);
	for (m = 0; m < NMETHODS; m++)
		free(out[m]);
	free(th);
	free(jobs);
	free(times);
	alias_free(&lat[0]);
	alias_free(&lat[1]);
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: sl-simulate [-n ROLLOUTS] [-s SEED] [-j THREADS] "
	    "[--scenario NAME]\n"
	    "       [--steps \"1 5 25 50\"] [--step-time S] [--interval S] "
	    "[--max-hold X]\n"
	    "       [--median-ms MS] [--sigma S] [--canary-rps R] "
	    "[--alpha A]\n"
	    "       [--error-margin F] [--max-slower-prob P] "
	    "[--latency-tolerance US]\n"
	    "       [--flagger-limit N] [--list]\n");
}

/* Parse a positive number or exit. */
static double
num_arg(const char *name, const char *s, double min)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min)) {
		fprintf(stderr, "sl-simulate: bad %s: %s\n", name, s);
		exit(1);
	}
	return v;
}

/* Parse "1 5 25 50 100" (100 and above is promotion, dropped). */
static void
parse_steps(struct opts *o, const char *s)
{
	char *copy = strdup(s), *tok, *save = NULL;

	if (copy == NULL)
		abort();
	o->nsteps = 0;
	for (tok = strtok_r(copy, " ,", &save); tok != NULL;
	     tok = strtok_r(NULL, " ,", &save)) {
		double v = num_arg("step", tok, 0.01);

		if (v >= 100)
			continue;
		if (o->nsteps == MAX_STEPS) {
			fprintf(stderr, "sl-simulate: too many steps\n");
			exit(1);
		}
		o->steps[o->nsteps++] = (uint32_t)v;
	}
	free(copy);
	if (o->nsteps == 0) {
		fprintf(stderr, "sl-simulate: no step below 100%%\n");
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"rollouts", required_argument, NULL, 'n'},
	    {"seed", required_argument, NULL, 's'},
	    {"threads", required_argument, NULL, 'j'},
	    {"scenario", required_argument, NULL, 'S'},
	    {"steps", required_argument, NULL, 'T'},
	    {"step-time", required_argument, NULL, 't'},
	    {"interval", required_argument, NULL, 'i'},
	    {"max-hold", required_argument, NULL, 'H'},
	    {"median-ms", required_argument, NULL, 'm'},
	    {"sigma", required_argument, NULL, 'g'},
	    {"canary-rps", required_argument, NULL, 'r'},
	    {"alpha", required_argument, NULL, 'a'},
	    {"flagger-limit", required_argument, NULL, 'f'},
	    {"error-margin", required_argument, NULL, 'e'},
	    {"max-slower-prob", required_argument, NULL, 'p'},
	    {"latency-tolerance", required_argument, NULL, 'L'},
	    {"list", no_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static struct scenario scenarios[] = {
	    {.name = "aa",
	        .title = "A/A, 0.1% errors",
	        .canary_rps = 10,
	        .err_stable = 0.001,
	        .err_canary = 0.001},
	    {.name = "aa-50",
	        .title = "A/A, 0.1% errors",
	        .canary_rps = 50,
	        .err_stable = 0.001,
	        .err_canary = 0.001},
	    {.name = "edge-err",
	        .title = "at the limit: 1% errors (= max_error_rate)",
	        .canary_rps = 10,
	        .err_stable = 0.01,
	        .err_canary = 0.01},
	    {.name = "edge-p99",
	        .title = "at the limit: canary p99 = 1.5x stable",
	        .canary_rps = 50,
	        .err_stable = 0.001,
	        .err_canary = 0.001,
	        .p99_factor = 1.5},
	    {.name = "edge-shift",
	        .title = "at the limit: P(canary slower) = 0.55",
	        .canary_rps = 50,
	        .err_stable = 0.001,
	        .err_canary = 0.001,
	        .slower_prob = 0.55},
	    {.name = "err-5",
	        .title = "errors 0.1% -> 5%",
	        .canary_rps = 10,
	        .regression = true,
	        .err_stable = 0.001,
	        .err_canary = 0.05},
	    {.name = "err-0-5",
	        .title = "errors 0% -> 5%",
	        .canary_rps = 10,
	        .regression = true,
	        .err_stable = 0,
	        .err_canary = 0.05},
	    {.name = "err-1",
	        .title = "errors 0.1% -> 1%",
	        .canary_rps = 10,
	        .regression = true,
	        .err_stable = 0.001,
	        .err_canary = 0.01},
	    {.name = "err-2",
	        .title = "errors 1% -> 2%",
	        .canary_rps = 10,
	        .regression = true,
	        .err_stable = 0.01,
	        .err_canary = 0.02},
	    {.name = "p99x2",
	        .title = "p99 x2 (tail), median unchanged",
	        .canary_rps = 50,
	        .regression = true,
	        .err_stable = 0.001,
	        .err_canary = 0.001,
	        .p99_factor = 2},
	    {.name = "shift20",
	        .title = "whole distribution +20%",
	        .canary_rps = 50,
	        .regression = true,
	        .err_stable = 0.001,
	        .err_canary = 0.001,
	        .median_factor = 1.2},
	    {.name = "tiny-shift",
	        .title = "fast service, canary +10 us (30 -> 40 us, sigma 0.2)",
	        .canary_rps = 50,
	        .err_stable = 0.001,
	        .err_canary = 0.001,
	        .median_ms = 0.03,
	        .sigma = 0.2,
	        .median_factor = 4.0 / 3},
	    {.name = "fast-30",
	        .title = "fast service, whole distribution +30% (1 -> 1.3 ms)",
	        .canary_rps = 50,
	        .regression = true,
	        .err_stable = 0.001,
	        .err_canary = 0.001,
	        .median_ms = 1,
	        .sigma = 0.3,
	        .median_factor = 1.3},
	    {.name = "fast-x2",
	        .title = "fast service, whole distribution x2 (1 -> 2 ms)",
	        .canary_rps = 50,
	        .regression = true,
	        .err_stable = 0.001,
	        .err_canary = 0.001,
	        .median_ms = 1,
	        .sigma = 0.3,
	        .median_factor = 2},
	};
	const size_t nsc = sizeof scenarios / sizeof scenarios[0];
	struct opts o;
	struct timespec t0, t1;
	size_t i, ran = 0;
	int ch;

	memset(&o, 0, sizeof o);
	o.rollouts = 1000;
	o.seed = 1;
	o.threads = 2;
	o.step_time = 60;
	o.interval = 10;
	o.max_hold = 10;
	o.median_ms = 20;
	o.sigma = 0.5;
	o.flagger_limit = 5;
	o.kayenta_alpha = 0.05;
	parse_steps(&o, "1 5 25 50 100");
	sl_verdict_params_default(&o.vp);

	while (
	    (ch = getopt_long(argc, argv, "n:s:j:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			o.rollouts = (unsigned)num_arg("rollouts", optarg, 1);
			break;
		case 's':
			o.seed = (uint64_t)num_arg("seed", optarg, 0);
			break;
		case 'j':
			o.threads = (unsigned)num_arg("threads", optarg, 1);
			break;
		case 'S':
			o.only = optarg;
			break;
		case 'T':
			parse_steps(&o, optarg);
			break;
		case 't':
			o.step_time = (uint32_t)num_arg("step-time", optarg, 1);
			break;
		case 'i':
			o.interval = (uint32_t)num_arg("interval", optarg, 1);
			break;
		case 'H':
			o.max_hold = num_arg("max-hold", optarg, 1);
			break;
		case 'm':
			o.median_ms = num_arg("median-ms", optarg, 0.001);
			break;
		case 'g':
			o.sigma = num_arg("sigma", optarg, 0.01);
			break;
		case 'r':
			o.canary_rps = num_arg("canary-rps", optarg, 0.01);
			break;
		case 'a':
			o.vp.alpha = num_arg("alpha", optarg, 1e-12);
			break;
		case 'f':
			o.flagger_limit =
			    (unsigned)num_arg("flagger-limit", optarg, 1);
			break;
		case 'e':
			o.vp.error_margin = num_arg("error-margin", optarg, 0);
			break;
		case 'p':
			o.vp.max_slower_prob =
			    num_arg("max-slower-prob", optarg, 0.5);
			break;
		case 'L':
			o.vp.latency_tolerance =
			    num_arg("latency-tolerance", optarg, 0);
			break;
		case 'l':
			for (i = 0; i < nsc; i++)
				printf("%-8s %s\n", scenarios[i].name,
				    scenarios[i].title);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (sl_verdict_params_check(&o.vp, NULL, 0) != 0) {
		fprintf(stderr, "sl-simulate: bad sluice parameters\n");
		return 1;
	}
	for (i = 0; i < nsc; i++) {
		struct scenario *sc = &scenarios[i];

		double med = sc->median_ms > 0 ? sc->median_ms : o.median_ms;
		double sig = sc->sigma > 0 ? sc->sigma : o.sigma;

		sc->stable = (struct version_model){sc->err_stable, med, sig};
		sc->canary = (struct version_model){sc->err_canary, med, sig};
		if (sc->p99_factor > 0)
			sc->canary.sigma = sig + log(sc->p99_factor) / Z99;
		if (sc->median_factor > 0)
			sc->canary.median_ms = med * sc->median_factor;
		/* P(canary slower) = phi(ln(factor) / (sigma sqrt 2)). */
		if (sc->slower_prob > 0)
			sc->canary.median_ms =
			    med * exp(sig * M_SQRT2 * phi_inv(sc->slower_prob));
	}

	printf("sl-simulate: %u rollouts per scenario, seed %llu; steps",
	    o.rollouts, (unsigned long long)o.seed);
	for (i = 0; i < o.nsteps; i++)
		printf(" %u", o.steps[i]);
	printf(" (then 100 = promote), step_time %u s, interval %u s; "
	       "latency lognormal median %g ms sigma %g (but the fast-service "
	       "scenarios, which keep their own);\n",
	    o.step_time, o.interval, o.median_ms, o.sigma);
	printf("sluice: alpha %g, min_requests %u, max_error_rate %g, "
	       "max_latency_ratio %g at q %g, max_slower_prob %g, "
	       "latency_tolerance %g us, hold <= %g x step_time;\n",
	    o.vp.alpha, o.vp.min_requests, o.vp.max_error_rate,
	    o.vp.max_latency_ratio, o.vp.latency_quantile, o.vp.max_slower_prob,
	    o.vp.latency_tolerance, o.max_hold);
	printf("flagger-style: %u failed interval checks; kayenta-style: "
	       "Mann-Whitney p < %g from 3 intervals.\n\n",
	    o.flagger_limit, o.kayenta_alpha);
	printf("| scenario | canary rps | method | reverted | median TTR | "
	       "p95 TTR | notes |\n");
	printf("|---|---:|---|---:|---:|---:|---|\n");
	fflush(stdout);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < nsc; i++) {
		if (o.only != NULL && strcmp(o.only, scenarios[i].name) != 0)
			continue;
		run_scenario(&o, &scenarios[i]);
		ran++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (ran == 0) {
		fprintf(stderr, "sl-simulate: no scenario %s (see --list)\n",
		    o.only);
		return 1;
	}
	fprintf(stderr, "sl-simulate: %zu scenarios in %.1f s\n", ran,
	    (double)(t1.tv_sec - t0.tv_sec) +
	        (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}
